//! VIP ownership: lease rules, address add/remove over netlink, gratuitous ARP and IPv6 neighbour advertisements.
