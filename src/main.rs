// The library forbids unsafe code; the binary's one exception is its
// allocator module, which calls mimalloc (see src/allocator.rs for why).
#![deny(unsafe_code)]

mod allocator;

#[global_allocator]
static ALLOCATOR: allocator::Mimalloc = allocator::Mimalloc;

fn main() -> std::process::ExitCode {
    portcullis::server::set_collector(allocator::collect);
    portcullis::cli::main()
}
