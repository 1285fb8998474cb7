//! What a broadcast stream costs in memory when clients stop reading, counted
//! by a global allocator (so this binary holds this one test). A broadcast
//! is serialized once and its bytes are shared by every recipient's queue
//! and socket: slow consumers hold no private copies, and together they
//! hold about what one of them would.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use wsduplex::{Server, server::SlowConsumer};

/// Counts live heap bytes, and allocations of at least [`LARGE`] bytes.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static LARGE_ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

/// An allocation this large holds (a part of) a message.
const LARGE: usize = 16 * 1024;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        if layout.size() >= LARGE {
            LARGE_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        if new_size >= LARGE {
            LARGE_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// What a socket holds of what the driver hands it, beyond one message.
const SOCKET_BUFFER: usize = 64 * 1024;

#[tokio::test]
async fn slow_consumers_of_a_broadcast_stream_share_its_bytes() {
    const CONSUMERS: usize = 20;
    const MESSAGE: usize = 64 * 1024;
    const OUTBOUND: usize = 1 << 20;
    let builder =
        Server::builder().outbound_bytes(OUTBOUND).outbound_capacity(100_000).slow_consumer(SlowConsumer::DropOldest);
    let mut server = start_server_with(builder).await;
    let (mut slow, mut conns) = (Vec::new(), Vec::new());
    for _ in 0..CONSUMERS {
        // Never read: each stops taking bytes once the kernel's buffers fill.
        slow.push(Raw::connect_with_small_buffer(&server).await);
        conns.push(server.next_connection().await);
    }
    let text = "m".repeat(MESSAGE);
    let (live_before, large_before) = (LIVE.load(Ordering::SeqCst), LARGE_ALLOCATIONS.load(Ordering::SeqCst));
    within(async {
        for _ in 0..300 {
            server.hub.all().heard(text.clone()).await.unwrap();
            // Each driver writes what its socket takes.
            tokio::task::yield_now().await;
        }
    })
    .await;
    let grown = LIVE.load(Ordering::SeqCst).saturating_sub(live_before);
    let large = LARGE_ALLOCATIONS.load(Ordering::SeqCst) - large_before;
    let queued: usize = conns.iter().map(|conn| conn.peer().queued_bytes()).sum();
    println!("the heap grew by {grown} bytes; {large} large allocations; {queued} bytes queued in all");

    // Each broadcast makes a few large allocations however many consumers
    // it reaches (the copy of the text made here, the serializer's growing
    // buffer, its trim to size); a copy per consumer would be twenty more.
    assert!(large <= 5 * 300, "{large} large allocations for 300 broadcasts to {CONSUMERS} consumers");
    // Every consumer's queue is full, of the same newest messages...
    assert!(queued >= CONSUMERS * (OUTBOUND - MESSAGE), "queues not full: {queued} bytes in all");
    // ... and all of them together hold about what one slow consumer may:
    // a queue's worth, a socket's worth, and a message or two more, plus a
    // little bookkeeping each, not twenty private copies.
    let bound = OUTBOUND + 3 * MESSAGE + SOCKET_BUFFER + CONSUMERS * 8 * 1024;
    assert!(grown <= bound, "the heap grew by {grown} bytes, more than {bound}");
    drop(slow);
}
