//! `hull-vmm`: runs one microVM (docs/vmm.md): configured by arguments or a JSON file; the
//! exit code says how the guest or the VMM ended.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use hull_vmm::config::{DiskConfig, SerialOutput, VmConfig, VsockConfig, DEFAULT_GUEST_CID};
use hull_vmm::error::EXIT_CONFIG;
use hull_vmm::{Error, MicroVm};

/// hull's KVM microVM monitor.
#[derive(Parser, Debug)]
#[command(name = "hull-vmm", version, about)]
struct Args {
    /// vmlinux (ELF) or bzImage to boot.
    #[arg(long, value_name = "PATH")]
    kernel: Option<PathBuf>,
    /// initramfs to load.
    #[arg(long, value_name = "PATH")]
    initramfs: Option<PathBuf>,
    /// Kernel command line (reboot=k and the virtio devices are appended).
    #[arg(long, value_name = "STR")]
    cmdline: Option<String>,
    /// Guest RAM in MiB.
    #[arg(long, value_name = "MIB")]
    memory: Option<u64>,
    /// Number of vCPUs.
    #[arg(long, value_name = "N")]
    vcpus: Option<u8>,
    /// A virtio-blk disk, PATH[,ro]; repeatable (vda, vdb, ...).
    #[arg(long = "disk", value_name = "PATH[,ro]")]
    disks: Vec<String>,
    /// Host Unix socket of the virtio-vsock device.
    #[arg(long, value_name = "PATH")]
    vsock: Option<PathBuf>,
    /// Guest CID of the vsock device.
    #[arg(long, value_name = "N")]
    vsock_cid: Option<u32>,
    /// Serial console output: stdout, none or a file path.
    #[arg(long, value_name = "stdout|none|FILE")]
    serial: Option<String>,
    /// JSON configuration file (options given as well override it).
    #[arg(long, value_name = "FILE.json")]
    config: Option<PathBuf>,
}

fn build_config(args: Args) -> Result<VmConfig, Error> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::Config(format!("--config {}: {e}", path.display())))?;
            VmConfig::from_json(&text)
                .map_err(|e| Error::Config(format!("--config {}: {e}", path.display())))?
        }
        None => VmConfig::new(args.kernel.clone().ok_or_else(|| {
            Error::Config("--kernel PATH is required (or --config FILE.json)".into())
        })?),
    };
    if let Some(kernel) = args.kernel {
        config.kernel = kernel;
    }
    if args.initramfs.is_some() {
        config.initramfs = args.initramfs;
    }
    if let Some(cmdline) = args.cmdline {
        config.cmdline = cmdline;
    }
    if let Some(memory) = args.memory {
        config.memory_mib = memory;
    }
    if let Some(vcpus) = args.vcpus {
        config.vcpus = vcpus;
    }
    if !args.disks.is_empty() {
        config.disks = args
            .disks
            .iter()
            .map(|d| DiskConfig::parse(d))
            .collect::<Result<_, _>>()?;
    }
    match (args.vsock, args.vsock_cid) {
        (Some(path), cid) => {
            config.vsock = Some(VsockConfig {
                uds_path: path,
                guest_cid: cid
                    .or(config.vsock.as_ref().map(|v| v.guest_cid))
                    .unwrap_or(DEFAULT_GUEST_CID),
            })
        }
        (None, Some(cid)) => match config.vsock.as_mut() {
            Some(v) => v.guest_cid = cid,
            None => return Err(Error::Config("--vsock-cid needs --vsock PATH".into())),
        },
        (None, None) => {}
    }
    if let Some(serial) = args.serial {
        config.serial = SerialOutput::from(serial);
    }
    config.validate()?;
    Ok(config)
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            use clap::error::ErrorKind;
            return match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                _ => ExitCode::from(EXIT_CONFIG as u8),
            };
        }
    };
    let outcome = build_config(args)
        .and_then(|config| MicroVm::new(&config))
        .and_then(|vm| {
            hull_vmm::microvm::install_stop_signal_handlers()?;
            vm.run(None)
        });
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
