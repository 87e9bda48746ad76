#![forbid(unsafe_code)]

// mimalloc rather than glibc malloc: measured 0.5-1.3 µs less CPU per proxied
// request in the load bench (glibc's malloc_consolidate on hyper's read
// buffers was the hot spot), RSS flat through a 10-minute nonce soak. See
// BENCHMARKS.md for the figures and the memory it costs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    portcullis::cli::main()
}
