//! `hull-vmm`: runs one microVM (docs/vmm.md): configured by arguments or a JSON file; the
//! exit code says how the guest or the VMM ended.

use std::process::ExitCode;

use hull_vmm::cli::{Command, HELP};
use hull_vmm::MicroVm;

/// Logs to stderr, warnings and errors only unless `RUST_LOG` says otherwise
/// (`target=level,...` directives, e.g. `hull_vmm=debug`). A `Targets` filter rather than
/// `EnvFilter`: EnvFilter parses its directives with regexes, whose code and start-up work
/// cost the VMM about a megabyte of resident memory (docs/vmm.md, "Memory").
fn init_logging() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let default = || Targets::new().with_default(LevelFilter::WARN);
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => spec.parse::<Targets>().unwrap_or_else(|e| {
            eprintln!("hull-vmm: ignoring RUST_LOG={spec:?} ({e}); logging warnings only");
            default()
        }),
        _ => default(),
    };
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(vmm_log))
        .with(filter)
        .init();
}

/// stderr (hull's vmm.log) under one budget for the VMM's whole life: a guest provoking
/// warnings in a loop cannot grow it past [`hull_vmm::logcap::MAX_VMM_LOG`].
fn vmm_log() -> impl std::io::Write {
    use std::sync::{Mutex, OnceLock};
    static LOG: OnceLock<Mutex<hull_vmm::logcap::Capped<std::io::Stderr>>> = OnceLock::new();
    struct Shared(&'static Mutex<hull_vmm::logcap::Capped<std::io::Stderr>>);
    impl std::io::Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut log = self.0.lock().unwrap_or_else(|e| e.into_inner());
            log.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            let mut log = self.0.lock().unwrap_or_else(|e| e.into_inner());
            log.flush()
        }
    }
    Shared(LOG.get_or_init(|| {
        Mutex::new(hull_vmm::logcap::Capped::new(
            std::io::stderr(),
            hull_vmm::logcap::MAX_VMM_LOG,
        ))
    }))
}

fn main() -> ExitCode {
    init_logging();
    let command = hull_vmm::cli::parse(std::env::args_os().skip(1));
    let outcome = match command {
        Ok(Command::Help) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!("hull-vmm {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Ok(Command::Run(config)) => MicroVm::new(&config).and_then(|vm| {
            hull_vmm::microvm::install_stop_signal_handlers()?;
            if let Some(jail) = &config.jail {
                // Main thread + vCPUs, plus one of slack.
                let steps = hull_vmm::jail::enter(jail, u64::from(config.vcpus) + 2)?;
                tracing::debug!(target: "hull_vmm::jail", "jail entered: {steps}");
            }
            vm.run(None)
        }),
        Err(e) => Err(e),
    };
    match outcome {
        Ok(reason) => {
            tracing::info!(?reason, "guest stopped");
            ExitCode::from(reason.exit_code() as u8)
        }
        Err(e) => {
            eprintln!("hull-vmm: error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
