//! Subcommand definitions and dispatch. One module per group of commands.

use anyhow::Result;
use clap::Subcommand;
use hull_runtime::paths::StatePaths;

pub mod archive;
pub mod bench;
pub mod container;
pub mod copy;
pub mod doctor;
pub mod image;
pub mod network;
pub mod registry;
pub mod storage;

/// All `hull` subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage images: import, ls, inspect, rm.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Pull an image from a registry: `hull pull [REGISTRY/]NAME[:TAG|@DIGEST]`.
    Pull(registry::PullArgs),
    /// Push an image to a registry: `hull push IMAGE [REGISTRY/NAME[:TAG]]`.
    Push(registry::PushArgs),
    /// Save credentials for a registry (checked against it first).
    Login(registry::LoginArgs),
    /// Forget the credentials for a registry.
    Logout(registry::LogoutArgs),
    /// Write images to a docker-archive or oci-archive tar.
    Save(archive::SaveArgs),
    /// Load images from a docker-archive or oci-archive tar (names from the archive).
    Load(archive::LoadArgs),
    /// Give an image another name: `hull tag SOURCE TARGET`.
    Tag(registry::TagArgs),
    /// Check whether this host can run each isolation model, and how to fix what is missing.
    Doctor(doctor::DoctorArgs),
    /// Measure what each isolation model costs here (start, teardown, memory, density),
    /// side by side with crun, runc and QEMU where installed.
    Bench(bench::BenchArgs),
    /// Create and run a container: `hull run [OPTIONS] IMAGE [COMMAND [ARG...]]`.
    Run(container::RunArgs),
    /// Create a container without starting it.
    Create(container::CreateArgs),
    /// Start created or exited containers (in the background).
    Start(container::ContainersArgs),
    /// Run a command in a running container.
    Exec(container::ExecArgs),
    /// List containers.
    Ps(container::PsArgs),
    /// Print a container's output.
    Logs(container::LogsArgs),
    /// Stop containers (SIGTERM, then SIGKILL).
    Stop(container::StopArgs),
    /// Send a signal to containers.
    Kill(container::KillArgs),
    /// Remove containers.
    Rm(container::RmArgs),
    /// Show containers' full records as JSON.
    Inspect(container::ContainersArgs),
    /// List what a container changed in its image (A added, C changed, D deleted).
    Diff(storage::DiffArgs),
    /// Copy files between a container and the host: `hull cp [-a] CONTAINER:PATH HOSTPATH|-`
    /// or `hull cp [-a] HOSTPATH|- CONTAINER:PATH`.
    Cp(copy::CpArgs),
    /// Write a container's filesystem as a tar archive (stdout or -o FILE).
    Export(copy::ExportArgs),
    /// List a container's published ports, or the host address of one of them.
    Port(network::PortArgs),
    /// Container networks: check that a running container's network is intact.
    #[command(subcommand)]
    Network(network::NetworkCommand),
}

/// Runs a parsed command and returns the exit code.
pub fn dispatch(command: Command, paths: &StatePaths) -> Result<i32> {
    match command {
        Command::Image(cmd) => image::run(cmd, paths),
        Command::Pull(args) => registry::pull(args, paths),
        Command::Push(args) => registry::push(args, paths),
        Command::Login(args) => registry::login(args, paths),
        Command::Logout(args) => registry::logout(args, paths),
        Command::Save(args) => archive::save(args, paths),
        Command::Load(args) => archive::load(args, paths),
        Command::Tag(args) => registry::tag(args, paths),
        Command::Doctor(args) => doctor::run(args, paths),
        Command::Bench(args) => bench::run(args, paths),
        Command::Run(args) => container::run(args, paths),
        Command::Create(args) => container::create(args, paths),
        Command::Start(args) => container::start(args, paths),
        Command::Exec(args) => container::exec(args, paths),
        Command::Ps(args) => container::ps(args, paths),
        Command::Logs(args) => container::logs(args, paths),
        Command::Stop(args) => container::stop(args, paths),
        Command::Kill(args) => container::kill(args, paths),
        Command::Rm(args) => container::rm(args, paths),
        Command::Inspect(args) => container::inspect(args, paths),
        Command::Diff(args) => storage::diff(args, paths),
        Command::Cp(args) => copy::cp(args, paths),
        Command::Export(args) => copy::export(args, paths),
        Command::Port(args) => network::port(args, paths),
        Command::Network(cmd) => network::run(cmd, paths),
    }
}
