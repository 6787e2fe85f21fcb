//! `hull pull|login|logout|tag`, and the `--pull` policy of `run`/`create`.

use std::io::{BufRead, IsTerminal};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use hull_runtime::image::{ImageError, ImageStore, Reference};
use hull_runtime::paths::StatePaths;
use hull_runtime::registry::{self, Credentials, Platform, PullOptions, Registries};

/// `hull pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Image reference: `[REGISTRY/]NAME[:TAG|@DIGEST]` (default registry docker.io).
    reference: String,
    /// Platform to pick from a multi-platform image: OS/ARCH[/VARIANT].
    #[arg(long)]
    platform: Option<String>,
    /// Print only the image id.
    #[arg(short = 'q', long)]
    quiet: bool,
}

/// `hull push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Stored image (name or id).
    image: String,
    /// Where to push: `REGISTRY/NAME[:TAG]` (default: the image's own name).
    destination: Option<String>,
    /// Print only the pushed manifest digest.
    #[arg(short = 'q', long)]
    quiet: bool,
}

/// `hull login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Registry: `HOST[:PORT]` (default docker.io).
    registry: Option<String>,
    /// User name.
    #[arg(short = 'u', long)]
    username: Option<String>,
    /// Password (prefer --password-stdin: this one shows in `ps`).
    #[arg(short = 'p', long)]
    password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    password_stdin: bool,
}

/// `hull logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Registry: `HOST[:PORT]` (default docker.io).
    registry: Option<String>,
}

/// `hull tag`.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// Existing image (name or id).
    source: String,
    /// New name: `[REGISTRY/]NAME[:TAG]`.
    target: String,
}

/// When `run`/`create` pull the image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum PullPolicy {
    /// Pull only if no local image matches.
    #[default]
    Missing,
    /// Always pull (a tag may have moved).
    Always,
    /// Never pull; fail if the image is not local.
    Never,
}

/// Runs `hull pull`.
pub fn pull(args: PullArgs, paths: &StatePaths) -> Result<i32> {
    let reference = Reference::parse(&args.reference)?;
    let platform = args.platform.as_deref().map(Platform::parse).transpose()?;
    let outcome = pull_reference(paths, &reference, platform, !args.quiet)?;
    if args.quiet {
        println!("{}", outcome.id);
    }
    Ok(0)
}

fn pull_reference(
    paths: &StatePaths,
    reference: &Reference,
    platform: Option<Platform>,
    verbose: bool,
) -> Result<registry::PullOutcome> {
    let store = ImageStore::open(paths).context("open the image store")?;
    let registries = Registries::open(paths)?;
    if verbose {
        eprintln!("pulling {}", reference.full());
    }
    let opts = PullOptions {
        platform,
        progress: verbose,
    };
    let outcome = registry::pull(&store, &registries, reference, &opts)
        .with_context(|| format!("pull {}", reference.full()))?;
    if verbose {
        let what = if outcome.unchanged {
            "is up to date".to_string()
        } else {
            format!(
                "pulled: {} layer(s) downloaded, {} already present",
                outcome.layers_downloaded, outcome.layers_reused
            )
        };
        let via = if outcome.source != reference.domain {
            format!(" via {}", outcome.source)
        } else {
            String::new()
        };
        eprintln!(
            "{} ({}) {what}{via}; manifest {}",
            outcome.name,
            short_id(&outcome.id),
            outcome.manifest_digest
        );
    }
    Ok(outcome)
}

/// Runs `hull push`.
pub fn push(args: PushArgs, paths: &StatePaths) -> Result<i32> {
    let store = ImageStore::open(paths).context("open the image store")?;
    let dest = match &args.destination {
        Some(d) => Reference::parse(d)?,
        None => Reference::parse(&store.find(&args.image)?.name)?,
    };
    let registries = Registries::open(paths)?;
    let opts = registry::PushOptions {
        verbose: !args.quiet,
    };
    let outcome = registry::push(&store, paths, &registries, &args.image, &dest, &opts)
        .with_context(|| format!("push {} to {}", args.image, dest.full()))?;
    if args.quiet {
        println!("{}", outcome.manifest_digest);
    } else {
        eprintln!(
            "pushed {}: {} layer(s) uploaded, {} already there, {} mounted; manifest {}",
            dest.full(),
            outcome.uploaded,
            outcome.existing,
            outcome.mounted,
            outcome.manifest_digest
        );
    }
    Ok(0)
}

/// Makes sure `image` is in the store as `--pull` says (called before `run`/`create`
/// resolve it).
pub fn ensure_image(paths: &StatePaths, image: &str, policy: PullPolicy) -> Result<()> {
    if policy == PullPolicy::Never {
        return Ok(());
    }
    if policy == PullPolicy::Missing {
        let store = ImageStore::open(paths).context("open the image store")?;
        match store.find(image) {
            Ok(_) => return Ok(()),
            Err(ImageError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let missing = || format!("no such image: {image}");
    // An id (prefix) is not something a registry can serve.
    let reference = Reference::parse(image).with_context(missing)?;
    let pulled = pull_reference(paths, &reference, None, true);
    match policy {
        PullPolicy::Missing => pulled.map(drop).with_context(missing),
        _ => pulled.map(drop),
    }
}

/// Runs `hull login`.
pub fn login(args: LoginArgs, paths: &StatePaths) -> Result<i32> {
    let domain = registry_domain(args.registry.as_deref())?;
    let username = match args.username {
        Some(u) => u,
        None => prompt("Username: ")?,
    };
    let password = match (args.password, args.password_stdin) {
        (Some(_), true) => bail!("--password and --password-stdin are exclusive"),
        (Some(p), false) => p,
        (None, true) => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("read the password from stdin")?;
            line.trim_end_matches(['\n', '\r']).to_string()
        }
        (None, false) => prompt("Password: ")?,
    };
    if username.is_empty() || password.is_empty() {
        bail!("user name and password must not be empty");
    }
    let creds = Credentials { username, password };
    let registries = Registries::open(paths)?;
    let client = registry::Registry::new(&domain, registries.config(), Some(creds.clone()))?;
    client
        .check_login()
        .with_context(|| format!("log in to {domain}"))?;
    registries.credentials().set(&domain, &creds)?;
    eprintln!(
        "login succeeded; credentials saved in {}",
        registries.credentials().path().display()
    );
    Ok(0)
}

/// Runs `hull logout`.
pub fn logout(args: LogoutArgs, paths: &StatePaths) -> Result<i32> {
    let domain = registry_domain(args.registry.as_deref())?;
    let registries = Registries::open(paths)?;
    if registries.credentials().remove(&domain)? {
        eprintln!("removed the credentials for {domain}");
        Ok(0)
    } else {
        eprintln!("not logged in to {domain}");
        Ok(1)
    }
}

/// Runs `hull tag`.
pub fn tag(args: TagArgs, paths: &StatePaths) -> Result<i32> {
    let store = ImageStore::open(paths).context("open the image store")?;
    let name = store
        .tag(&args.source, &args.target)
        .with_context(|| format!("tag {} as {}", args.source, args.target))?;
    println!("{name}");
    Ok(0)
}

/// `HOST[:PORT]` from a login argument (a URL's scheme and path are dropped, as docker).
fn registry_domain(arg: Option<&str>) -> Result<String> {
    let Some(arg) = arg else {
        return Ok("docker.io".into());
    };
    let host = arg
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = host.split('/').next().unwrap_or("");
    let host = match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        h => h,
    };
    // Reuse the reference grammar's domain check.
    let probe = Reference::parse(&format!("{host}/x"))
        .ok()
        .filter(|r| r.domain == host);
    if probe.is_none() {
        bail!("{arg:?} is not a registry HOST[:PORT]");
    }
    Ok(host.to_string())
}

fn prompt(label: &str) -> Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!("{}is needed (give it as an option)", label.to_lowercase());
    }
    eprint!("{label}");
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

fn short_id(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_registry_names() {
        assert_eq!(registry_domain(None).unwrap(), "docker.io");
        assert_eq!(
            registry_domain(Some("localhost:5000")).unwrap(),
            "localhost:5000"
        );
        assert_eq!(
            registry_domain(Some("https://index.docker.io/v1/")).unwrap(),
            "docker.io"
        );
        assert_eq!(
            registry_domain(Some("127.0.0.1:5000")).unwrap(),
            "127.0.0.1:5000"
        );
        assert!(registry_domain(Some("not a host")).is_err());
        assert!(registry_domain(Some("nodots")).is_err());
    }
}
