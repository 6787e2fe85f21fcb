//! The `hull-vmm` command line (docs/vmm.md, "Command line"): options, `--help`, `--version`,
//! and how they combine with a `--config` JSON file.
//!
//! Parsed with `lexopt` rather than clap: clap's derive builds its whole command model at
//! every start, which costs the VMM about half a megabyte of resident code (docs/vmm.md,
//! "Memory"), and the VMM has a handful of flat options and no subcommands.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::config::{
    DiskConfig, FsConfig, NetConfig, SerialOutput, VmConfig, VsockConfig, DEFAULT_GUEST_CID,
};
use crate::error::{Error, Result};

/// `hull-vmm --help`.
pub const HELP: &str = "\
hull's KVM microVM monitor: runs one microVM until the guest ends it.

Usage: hull-vmm [OPTIONS]

Options:
      --kernel <PATH>              vmlinux (ELF) or bzImage to boot
      --initramfs <PATH>           initramfs to load
      --cmdline <STR>              Kernel command line (reboot=k and the virtio devices are appended)
      --memory <MIB>               Guest RAM in MiB
      --vcpus <N>                  Number of vCPUs
      --disk <PATH[,ro]>           A virtio-blk disk, PATH[,ro]; repeatable (vda, vdb, ...)
      --vsock <PATH>               Host Unix socket of the virtio-vsock device
      --vsock-cid <N>              Guest CID of the vsock device
      --net <fd=N|tap=NAME,mac=MAC[,mtu=M]>
                                   A virtio-net device on a TAP: an inherited descriptor
                                   (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR) or one opened by name
      --fs <socket=PATH,tag=TAG>   A virtio-fs device served by the vhost-user backend
                                   (virtiofsd) listening on PATH; repeatable
      --serial <stdout|none|FILE>  Serial console output: stdout, none or a file path
      --config <FILE.json>         JSON configuration file (options given as well override it)
      --no-seccomp                 Do not confine the VMM's threads with seccomp (debugging only)
      --jail <DIR>                 Run jailed with DIR as root (needs root and a new PID namespace)
      --jail-uid <UID>             The jailed VMM's uid (with --jail)
      --jail-gid <GID>             The jailed VMM's gid (with --jail)
      --jail-netns <PATH>          Join this network namespace instead of a new one (with --jail)
  -h, --help                       Print help
  -V, --version                    Print version
";

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Run a microVM with this (validated) configuration.
    Run(Box<VmConfig>),
    /// Print [`HELP`].
    Help,
    /// Print the version.
    Version,
}

/// The options as given, before they are merged with a config file.
#[derive(Debug, Default)]
struct Args {
    kernel: Option<PathBuf>,
    initramfs: Option<PathBuf>,
    cmdline: Option<String>,
    memory: Option<u64>,
    vcpus: Option<u8>,
    disks: Vec<String>,
    vsock: Option<PathBuf>,
    vsock_cid: Option<u32>,
    net: Option<String>,
    fs: Vec<String>,
    serial: Option<String>,
    config: Option<PathBuf>,
    no_seccomp: bool,
    jail: Option<PathBuf>,
    jail_uid: Option<u32>,
    jail_gid: Option<u32>,
    jail_netns: Option<PathBuf>,
}

/// Parses the arguments after the program name; bad input is an [`Error::Config`] naming
/// the option.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command> {
    use lexopt::Arg::{Long, Short, Value};
    let mut parser = lexopt::Parser::from_args(args);
    let mut args = Args::default();
    while let Some(arg) = parser.next().map_err(lexopt_error)? {
        match arg {
            Short('h') | Long("help") => return Ok(Command::Help),
            Short('V') | Long("version") => return Ok(Command::Version),
            Long("kernel") => set_once(&mut args.kernel, "--kernel", path(&mut parser)?)?,
            Long("initramfs") => set_once(&mut args.initramfs, "--initramfs", path(&mut parser)?)?,
            Long("cmdline") => set_once(
                &mut args.cmdline,
                "--cmdline",
                text(&mut parser, "--cmdline")?,
            )?,
            Long("memory") => set_once(
                &mut args.memory,
                "--memory",
                number(&mut parser, "--memory")?,
            )?,
            Long("vcpus") => set_once(&mut args.vcpus, "--vcpus", number(&mut parser, "--vcpus")?)?,
            Long("disk") => args.disks.push(text(&mut parser, "--disk")?),
            Long("vsock") => set_once(&mut args.vsock, "--vsock", path(&mut parser)?)?,
            Long("vsock-cid") => set_once(
                &mut args.vsock_cid,
                "--vsock-cid",
                number(&mut parser, "--vsock-cid")?,
            )?,
            Long("net") => set_once(&mut args.net, "--net", text(&mut parser, "--net")?)?,
            Long("fs") => args.fs.push(text(&mut parser, "--fs")?),
            Long("serial") => {
                set_once(&mut args.serial, "--serial", text(&mut parser, "--serial")?)?
            }
            Long("config") => set_once(&mut args.config, "--config", path(&mut parser)?)?,
            Long("no-seccomp") => args.no_seccomp = true,
            Long("jail") => set_once(&mut args.jail, "--jail", path(&mut parser)?)?,
            Long("jail-uid") => set_once(
                &mut args.jail_uid,
                "--jail-uid",
                number(&mut parser, "--jail-uid")?,
            )?,
            Long("jail-gid") => set_once(
                &mut args.jail_gid,
                "--jail-gid",
                number(&mut parser, "--jail-gid")?,
            )?,
            Long("jail-netns") => {
                set_once(&mut args.jail_netns, "--jail-netns", path(&mut parser)?)?
            }
            Value(v) => {
                return Err(Error::Config(format!(
                    "unexpected argument '{}' (hull-vmm takes options only; see --help)",
                    v.to_string_lossy()
                )))
            }
            Short(c) => return Err(Error::Config(format!("unknown option '-{c}' (see --help)"))),
            Long(name) => {
                return Err(Error::Config(format!(
                    "unknown option '--{name}' (see --help)"
                )))
            }
        }
    }
    build_config(args).map(|c| Command::Run(Box::new(c)))
}

fn lexopt_error(e: lexopt::Error) -> Error {
    Error::Config(e.to_string())
}

fn set_once<T>(slot: &mut Option<T>, name: &str, value: T) -> Result<()> {
    if slot.is_some() {
        return Err(Error::Config(format!("{name} given more than once")));
    }
    *slot = Some(value);
    Ok(())
}

fn path(parser: &mut lexopt::Parser) -> Result<PathBuf> {
    parser.value().map(PathBuf::from).map_err(lexopt_error)
}

fn text(parser: &mut lexopt::Parser, name: &str) -> Result<String> {
    parser
        .value()
        .map_err(lexopt_error)?
        .into_string()
        .map_err(|v| Error::Config(format!("{name} {:?}: not valid UTF-8", v.to_string_lossy())))
}

fn number<T: std::str::FromStr>(parser: &mut lexopt::Parser, name: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    let value = text(parser, name)?;
    value
        .parse()
        .map_err(|e| Error::Config(format!("{name} {value:?}: {e}")))
}

/// Merges the options over the `--config` file (if any) and validates the result.
fn build_config(args: Args) -> Result<VmConfig> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::Config(format!("--config {}: {e}", path.display())))?;
            VmConfig::from_json(&text)
                .map_err(|e| Error::Config(format!("--config {}: {e}", path.display())))?
        }
        None => VmConfig {
            seccomp: true,
            ..VmConfig::new(args.kernel.clone().ok_or_else(|| {
                Error::Config("--kernel PATH is required (or --config FILE.json)".into())
            })?)
        },
    };
    if args.no_seccomp {
        config.seccomp = false;
    }
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
            .collect::<Result<_>>()?;
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
    if let Some(net) = args.net {
        config.net = Some(NetConfig::parse(&net)?);
    }
    if !args.fs.is_empty() {
        config.fs = args
            .fs
            .iter()
            .map(|f| FsConfig::parse(f))
            .collect::<Result<_>>()?;
    }
    if let Some(serial) = args.serial {
        config.serial = SerialOutput::from(serial);
    }
    match (args.jail, args.jail_uid, args.jail_gid) {
        (Some(dir), Some(uid), Some(gid)) => {
            config.jail = Some(crate::jail::JailConfig {
                dir,
                uid,
                gid,
                netns: args.jail_netns,
            })
        }
        (None, None, None) if args.jail_netns.is_none() => {}
        _ => {
            return Err(Error::Config(
                "--jail DIR, --jail-uid and --jail-gid go together (--jail-netns needs them)"
                    .into(),
            ))
        }
    }
    config.validate()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Command> {
        parse(args.iter().map(OsString::from))
    }

    fn config(args: &[&str]) -> VmConfig {
        match run(args) {
            Ok(Command::Run(c)) => *c,
            other => panic!("{args:?}: expected a config, got {other:?}"),
        }
    }

    fn error(args: &[&str]) -> String {
        match run(args) {
            Err(e @ Error::Config(_)) => e.to_string(),
            other => panic!("{args:?}: expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn every_option_reaches_the_config() {
        let c = config(&[
            "--kernel",
            "/k",
            "--initramfs=/i",
            "--cmdline",
            "console=ttyS0 quiet",
            "--memory",
            "256",
            "--vcpus",
            "2",
            "--disk",
            "/a.img,ro",
            "--disk",
            "/b.img",
            "--vsock",
            "/run/v.sock",
            "--vsock-cid",
            "7",
            "--serial",
            "none",
            "--net",
            "fd=4,mac=02:00:00:00:00:09",
        ]);
        assert_eq!(c.kernel, PathBuf::from("/k"));
        assert_eq!(
            c.net.as_ref().map(|n| n.tap.clone()),
            Some(crate::config::TapSource::Fd(4))
        );
        assert_eq!(c.initramfs, Some(PathBuf::from("/i")));
        assert_eq!(c.cmdline, "console=ttyS0 quiet");
        assert_eq!((c.memory_mib, c.vcpus), (256, 2));
        assert_eq!(c.disks.len(), 2);
        assert!(c.disks[0].read_only && !c.disks[1].read_only);
        assert_eq!(c.disks[1].path, PathBuf::from("/b.img"));
        let vsock = c.vsock.expect("vsock");
        assert_eq!(
            (vsock.uds_path, vsock.guest_cid),
            (PathBuf::from("/run/v.sock"), 7)
        );
        assert!(matches!(c.serial, SerialOutput::None));
    }

    #[test]
    fn defaults_apply_when_only_the_kernel_is_given() {
        let c = config(&["--kernel", "/k"]);
        let d = VmConfig::new("/k");
        assert_eq!(
            (c.memory_mib, c.vcpus, c.cmdline.as_str()),
            (d.memory_mib, d.vcpus, d.cmdline.as_str())
        );
        assert!(c.disks.is_empty() && c.vsock.is_none() && c.initramfs.is_none());
    }

    #[test]
    fn help_and_version() {
        assert!(matches!(run(&["--help"]), Ok(Command::Help)));
        assert!(matches!(run(&["-h"]), Ok(Command::Help)));
        assert!(matches!(run(&["--version"]), Ok(Command::Version)));
        assert!(matches!(run(&["-V"]), Ok(Command::Version)));
        for option in [
            "--kernel",
            "--initramfs",
            "--cmdline",
            "--memory",
            "--vcpus",
            "--disk",
            "--vsock",
            "--vsock-cid",
            "--serial",
            "--config",
        ] {
            assert!(HELP.contains(option), "--help lists {option}");
        }
    }

    #[test]
    fn bad_options_are_named() {
        for (args, needle) in [
            (&["--bogus"][..], "--bogus"),
            (&["-x"][..], "-x"),
            (&["--kernel", "/k", "stray"][..], "stray"),
            (&["--kernel"][..], "--kernel"),
            (
                &["--kernel", "/k", "--memory", "lots"][..],
                "--memory \"lots\"",
            ),
            (&["--kernel", "/k", "--vcpus", "300"][..], "--vcpus \"300\""),
            (&["--kernel", "/k", "--vcpus", "0"][..], "vcpus"),
            (
                &["--kernel", "/k", "--kernel", "/j"][..],
                "--kernel given more than once",
            ),
            (&["--kernel", "/k", "--vsock-cid", "9"][..], "--vsock"),
            (&["--kernel", "/k", "--disk", "/d,zz"][..], "zz"),
            (&["--memory", "64"][..], "--kernel"),
        ] {
            let msg = error(args);
            assert!(msg.contains(needle), "{args:?}: {msg}");
        }
    }

    #[test]
    fn options_override_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("vm.json");
        std::fs::write(
            &file,
            r#"{"kernel": "/k", "memory_mib": 64, "vsock": {"uds_path": "/v.sock", "guest_cid": 5}}"#,
        )
        .unwrap();
        let file = file.to_str().unwrap();
        let c = config(&["--config", file, "--memory", "96", "--vsock-cid", "9"]);
        assert_eq!(c.kernel, PathBuf::from("/k"));
        assert_eq!(c.memory_mib, 96);
        assert_eq!(c.vsock.expect("vsock").guest_cid, 9);
        let msg = error(&["--config", "/nonexistent/vm.json"]);
        assert!(msg.contains("/nonexistent/vm.json"), "{msg}");
    }
}
