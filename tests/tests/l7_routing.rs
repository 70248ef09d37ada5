//! Routing by host (exact and wildcard), path (prefix, exact, regex), method and
//! header; first match wins; default pool; 404 when nothing matches.

use tests::client::{self, get, get_with};
use tests::{Proxy, TestBackend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_pick_pools_by_host_path_method_and_header() {
    let names = ["api", "wild", "exact", "regex", "post", "canary", "default"];
    let mut backends = Vec::new();
    for n in names {
        backends.push(TestBackend::start(n).await);
    }
    let mut cfg = String::from(
        r#"
[[listener]]
name = "web"
bind = "{bind}"
protocol = "http"
default_pool = "default"
  [[listener.route]]
  header = { name = "x-canary", value = "1" }
  pool = "canary"
  [[listener.route]]
  host = "api.example.com"
  path_prefix = "/v1"
  pool = "api"
  [[listener.route]]
  host = "*.example.com"
  pool = "wild"
  [[listener.route]]
  path_exact = "/exact"
  pool = "exact"
  [[listener.route]]
  path_regex = "^/items/[0-9]+$"
  pool = "regex"
  [[listener.route]]
  method = "POST"
  pool = "post"
"#,
    );
    for (n, b) in names.iter().zip(&backends) {
        cfg.push_str(&format!("[[pool]]\nname = \"{n}\"\n  [[pool.backend]]\n  address = \"{}\"\n", b.addr));
    }
    let p = Proxy::start(&cfg).await;
    let c = client::http1();
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        ("/v1/users", &[("host", "api.example.com")], "api"),
        ("/v2/users", &[("host", "api.example.com")], "wild"),
        ("/v1/users", &[("host", "API.Example.com:8080")], "api"),
        ("/", &[("host", "shop.example.com")], "wild"),
        ("/", &[("host", "example.com")], "default"),
        ("/exact", &[], "exact"),
        ("/exact/more", &[], "default"),
        ("/items/42", &[], "regex"),
        ("/items/x", &[], "default"),
        ("/anything", &[("x-canary", "1"), ("host", "api.example.com")], "canary"),
        ("/anything", &[("x-canary", "0")], "default"),
    ];
    for (path, headers, want) in cases {
        let r = get_with(&c, &p.url(path), headers).await.unwrap();
        assert_eq!(r.text(), *want, "{path} {headers:?}");
    }
    let post = http::Request::post(p.url("/form")).body(http_body_util::Full::new(bytes::Bytes::from("x"))).unwrap();
    assert_eq!(client::send(&c, post).await.unwrap().text(), "post");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_match_without_default_is_404() {
    let b = TestBackend::start("only").await;
    let cfg = format!(
        "[[listener]]\nname = \"web\"\nbind = \"{{bind}}\"\nprotocol = \"http\"\n  [[listener.route]]\n  path_prefix = \"/app\"\n  pool = \"p\"\n\
         [[pool]]\nname = \"p\"\n  [[pool.backend]]\n  address = \"{}\"\n",
        b.addr
    );
    let p = Proxy::start(&cfg).await;
    let c = client::http1();
    assert_eq!(get(&c, &p.url("/app/x")).await.unwrap().text(), "only");
    assert_eq!(get(&c, &p.url("/other")).await.unwrap().status, 404);
}
