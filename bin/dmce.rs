//! The multi-call binary: `clone_check`, `clone_dump`, `era_check`, `era_dump`, …
//! chosen by the name it is called by or by its first argument.

#[global_allocator]
static ALLOC: dmce::block_alloc::BlockAlloc = dmce::block_alloc::BlockAlloc::new();

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    std::process::exit(dmce::commands::main_with_args(args));
}
