//! A heap slot for a future, reused within a thread: a `Box::pin` that does not
//! go to the allocator each time. The per-request exchange of the HTTP/1.1 fast
//! path is a few KiB; boxing it per request cost an allocation on the
//! allocator's slow path (large blocks) and a free, about 3% of the proxy's
//! user-space instructions. Keeping it inline instead would make every
//! connection's task that large for its whole life, idle or not.

use std::alloc::{Layout, alloc, dealloc, handle_alloc_error};
use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::ptr::NonNull;
use std::task::{Context, Poll};

/// Free slots kept per thread (of any layout); more are freed.
const KEEP: usize = 128;

/// Free slots of this thread, freed for good when the thread ends.
struct Free(Vec<(NonNull<u8>, Layout)>);

impl Drop for Free {
    fn drop(&mut self) {
        for (p, layout) in self.0.drain(..) {
            // SAFETY: allocated by `alloc` with this layout and no longer in use.
            unsafe { dealloc(p.as_ptr(), layout) };
        }
    }
}

thread_local! {
    static FREE: RefCell<Free> = const { RefCell::new(Free(Vec::new())) };
}

/// Owns a future on the heap, like `Pin<Box<F>>`.
pub struct Slot<F> {
    ptr: NonNull<F>,
}

// SAFETY: a `Slot` owns its `F` alone, as a `Box<F>` does; the free list it
// returns memory to is only raw memory, valid to free from any thread.
unsafe impl<F: Send> Send for Slot<F> {}
// SAFETY: as for `Send`: shared access to a `Slot` gives no access to `F`.
unsafe impl<F: Sync> Sync for Slot<F> {}

impl<F: Future> Slot<F> {
    pub fn new(f: F) -> Slot<F> {
        let layout = Layout::new::<F>();
        let raw = if layout.size() == 0 {
            NonNull::<F>::dangling().cast::<u8>()
        } else {
            let reused = FREE
                .try_with(|free| {
                    let mut free = free.borrow_mut();
                    let at = free.0.iter().rposition(|&(_, l)| l == layout)?;
                    Some(free.0.swap_remove(at).0)
                })
                .ok()
                .flatten();
            reused.unwrap_or_else(|| {
                // SAFETY: the layout's size is not zero.
                NonNull::new(unsafe { alloc(layout) }).unwrap_or_else(|| handle_alloc_error(layout))
            })
        };
        let ptr = raw.cast::<F>();
        // SAFETY: `ptr` is valid for writes of `F` and aligned for it (a block of
        // `F`'s own layout), and holds no live value.
        unsafe { ptr.as_ptr().write(f) };
        Slot { ptr }
    }
}

impl<F: Future> Future for Slot<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: the `F` stays at its heap address until the slot drops it in
        // place and is never moved out: pinned, as inside a `Box`.
        unsafe { Pin::new_unchecked(&mut *self.ptr.as_ptr()) }.poll(cx)
    }
}

impl<F> Drop for Slot<F> {
    fn drop(&mut self) {
        let layout = Layout::new::<F>();
        // SAFETY: the slot holds a live `F`, dropped exactly once, here.
        unsafe { std::ptr::drop_in_place(self.ptr.as_ptr()) };
        if layout.size() == 0 {
            return;
        }
        let raw = self.ptr.cast::<u8>();
        let kept = FREE
            .try_with(|free| {
                let mut free = free.borrow_mut();
                let keep = free.0.len() < KEEP;
                if keep {
                    free.0.push((raw, layout));
                }
                keep
            })
            .unwrap_or(false);
        if !kept {
            // SAFETY: allocated with this layout (by `alloc`, maybe for an
            // earlier slot) and now empty.
            unsafe { dealloc(raw.as_ptr(), layout) };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;

    async fn count(d: Rc<()>) -> usize {
        tokio::task::yield_now().await;
        Rc::strong_count(&d)
    }

    #[test]
    fn a_slot_runs_its_future_drops_it_once_and_is_reused() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let held = Rc::new(());
        let s = Slot::new(count(Rc::clone(&held)));
        let first = s.ptr.as_ptr() as usize;
        assert_eq!(rt.block_on(s), 2);
        assert_eq!(Rc::strong_count(&held), 1, "the future's captures are dropped with the slot");
        // The next future of that layout takes the freed block; one not polled
        // at all is dropped too.
        let s = Slot::new(count(Rc::clone(&held)));
        assert_eq!(s.ptr.as_ptr() as usize, first);
        let other = Slot::new(count(Rc::clone(&held)));
        assert_ne!(other.ptr.as_ptr() as usize, first);
        drop((s, other));
        assert_eq!(Rc::strong_count(&held), 1);
    }
}
