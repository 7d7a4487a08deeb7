//! `protonpass-broker`: the self-hosted authorization server for agent access
//! tokens, and the owner's command line.

use std::process::ExitCode;

// Many small allocations cross threads (request tasks, the store writer):
// mimalloc spends less time on them than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    protonpass_broker::run()
}
