use criterion::{black_box, criterion_group, criterion_main, Criterion};
use portcullis::replay::{MemoryNonceStore, NonceStore};

const WINDOW: u64 = 300;
const NOW: u64 = 1_700_000_000;

fn bench_replay(c: &mut Criterion) {
    // Insert throughput: fresh nonces; the store is large enough that the
    // bench never hits `Full` (it is recreated when it gets close).
    let cap = 4_000_000;
    let mut store = MemoryNonceStore::new(WINDOW, cap);
    let mut i: u64 = 0;
    c.bench_function("replay/insert_fresh", |b| {
        b.iter(|| {
            if i as usize >= cap - 1 {
                store = MemoryNonceStore::new(WINDOW, cap);
                i = 0;
            }
            i += 1;
            let nonce = i.to_string();
            store.check_and_insert_sync("bench-key", black_box(&nonce), NOW - (i % WINDOW), NOW)
        })
    });

    // Steady state: a clock that advances one second every `rate` fresh
    // nonces, started two windows in the past so buckets expire during
    // the run. 1000/s with a 300 s window holds about 350k live nonces
    // (like the soak); 70k/s with a 60 s window about 5M (the load bench's
    // gateway if it ran at full speed for more than a window).
    for (name, window, rate) in [
        ("replay/insert_steady_350k", WINDOW, 1000),
        ("replay/insert_steady_5m", 60, 70_000),
    ] {
        let store = MemoryNonceStore::new(window, 16_000_000);
        let mut i: u64 = 0;
        let insert = |store: &MemoryNonceStore, i: &mut u64| {
            *i += 1;
            let now = NOW + *i / rate;
            let nonce = i.to_string();
            store.check_and_insert_sync("bench-key", black_box(&nonce), now, now)
        };
        for _ in 0..(2 * window * rate) {
            assert!(insert(&store, &mut i).is_ok(), "prefill refused");
        }
        c.bench_function(name, |b| b.iter(|| insert(&store, &mut i)));
    }

    // Check of a replayed nonce (store holds 100k entries).
    let store = MemoryNonceStore::new(WINDOW, 1_000_000);
    for n in 0..100_000u64 {
        let _ = store.check_and_insert_sync("bench-key", &n.to_string(), NOW, NOW);
    }
    c.bench_function("replay/check_replayed", |b| {
        b.iter(|| store.check_and_insert_sync("bench-key", black_box("4242"), NOW, NOW))
    });

    // Bytes per nonce at 1M entries (capacity based), printed once.
    let n = 1_000_000usize;
    let store = MemoryNonceStore::new(WINDOW, n);
    for k in 0..n as u64 {
        let _ =
            store.check_and_insert_sync("bench-key", &format!("{k:016x}"), NOW - (k % WINDOW), NOW);
    }
    let heap = store.heap_bytes();
    println!(
        "replay/memory: {} nonces, {heap} heap bytes = {:.1} bytes/nonce (+{} fixed)",
        store.len(),
        heap as f64 / n as f64,
        store.fixed_bytes()
    );
}

criterion_group!(benches, bench_replay);
criterion_main!(benches);
