//! The commands that look at or adjust a container: `ps`, `list`, `pause`/`resume`,
//! `update`, and `spec` (a default config.json).

use std::collections::HashSet;
use std::io::Write;

use oci_spec::runtime::{LinuxResources, Spec};

use super::exec::read_json_input;
use super::{print_json, Context};
use crate::cli::{ListArgs, PsArgs, SpecArgs, UpdateArgs};
use crate::error::{OciError, Result};
use crate::state::Status;

/// `ps`.
pub fn ps(ctx: &Context, args: &PsArgs) -> Result<()> {
    let dir = ctx.store.open(&args.id)?;
    let record = dir.read()?;
    let pids = match record.status() {
        Status::Stopped | Status::Creating => Vec::new(),
        _ => ctx.runner(record.model)?.pids(&dir, &record)?,
    };
    drop(dir);
    match args.format.as_str() {
        "json" => print_json(&pids),
        "table" => ps_table(&pids, &args.ps_args),
        other => Err(OciError::Usage(format!(
            "unknown format {other:?} (expected table or json)"
        ))),
    }
}

/// runc's table: ps(1)'s header, then its lines whose PID column is one of `pids`.
fn ps_table(pids: &[i32], ps_args: &[String]) -> Result<()> {
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(|e| OciError::io("run ps", e))?;
    if !out.status.success() {
        return Err(OciError::Runtime(format!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let column = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| OciError::Usage("ps output has no PID column".into()))?;
    let wanted: HashSet<i32> = pids.iter().copied().collect();
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{header}");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(column)
            .and_then(|p| p.parse().ok());
        if pid.is_some_and(|p| wanted.contains(&p)) {
            let _ = writeln!(stdout, "{line}");
        }
    }
    Ok(())
}

/// `pause` (`freeze` true) and `resume`.
pub fn pause(ctx: &Context, id: &str, freeze: bool) -> Result<()> {
    let dir = ctx.store.open(id)?;
    let mut record = dir.read()?;
    let runner = ctx.runner(record.model)?;
    match (freeze, record.status()) {
        (true, Status::Running) => runner.pause(&dir, &record)?,
        (true, _) => return Err(OciError::PauseNotRunning(id.to_string())),
        (false, Status::Paused) => runner.resume(&dir, &record)?,
        (false, _) => return Err(OciError::NotPaused(id.to_string())),
    }
    record.paused = freeze;
    dir.write(&record)
}

/// `update`.
pub fn update(ctx: &Context, args: &UpdateArgs) -> Result<()> {
    let mut resources: LinuxResources = match &args.resources {
        Some(path) => {
            let bytes = read_json_input(path)?;
            serde_json::from_slice(&bytes).map_err(|e| {
                OciError::Usage(format!(
                    "--resources {}: not runtime-spec linux.resources: {e}",
                    path.display()
                ))
            })?
        }
        None => LinuxResources::default(),
    };
    apply_update_flags(&mut resources, args);
    let dir = ctx.store.open(&args.id)?;
    let record = dir.read()?;
    if record.status() == Status::Stopped {
        return Err(OciError::NotRunning(args.id.clone()));
    }
    ctx.runner(record.model)?.update(&dir, &record, &resources)
}

fn apply_update_flags(r: &mut LinuxResources, args: &UpdateArgs) {
    use oci_spec::runtime::LinuxPids;
    if args.memory.is_some() || args.memory_swap.is_some() {
        let mut m = r.memory().unwrap_or_default();
        if let Some(v) = args.memory {
            m.set_limit(Some(v));
        }
        if let Some(v) = args.memory_swap {
            m.set_swap(Some(v));
        }
        r.set_memory(Some(m));
    }
    if args.cpu_shares.is_some()
        || args.cpu_quota.is_some()
        || args.cpu_period.is_some()
        || args.cpuset_cpus.is_some()
        || args.cpuset_mems.is_some()
    {
        let mut c = r.cpu().clone().unwrap_or_default();
        if let Some(v) = args.cpu_shares {
            c.set_shares(Some(v));
        }
        if let Some(v) = args.cpu_quota {
            c.set_quota(Some(v));
        }
        if let Some(v) = args.cpu_period {
            c.set_period(Some(v));
        }
        if let Some(v) = &args.cpuset_cpus {
            c.set_cpus(Some(v.clone()));
        }
        if let Some(v) = &args.cpuset_mems {
            c.set_mems(Some(v.clone()));
        }
        r.set_cpu(Some(c));
    }
    if let Some(v) = args.pids_limit {
        let mut p = LinuxPids::default();
        p.set_limit(v);
        r.set_pids(Some(p));
    }
}

/// `list`.
pub fn list(ctx: &Context, args: &ListArgs) -> Result<()> {
    let mut states = Vec::new();
    for id in ctx.store.ids()? {
        match ctx.store.peek(&id) {
            Ok(r) => states.push(r.runc_state()),
            // Being created or deleted right now, or unreadable: runc skips those too.
            Err(e) => tracing::debug!(%id, "not listed: {e}"),
        }
    }
    if args.quiet {
        for s in &states {
            println!("{}", s.id);
        }
        return Ok(());
    }
    match args.format.as_str() {
        "json" => print_json(&states),
        "table" => {
            let mut rows = vec![[
                "ID".to_string(),
                "PID".into(),
                "STATUS".into(),
                "BUNDLE".into(),
                "CREATED".into(),
                "OWNER".into(),
            ]];
            for s in &states {
                rows.push([
                    s.id.clone(),
                    s.pid.to_string(),
                    s.status.clone(),
                    s.bundle.display().to_string(),
                    s.created.clone(),
                    if s.owner.is_empty() {
                        "root".into()
                    } else {
                        s.owner.clone()
                    },
                ]);
            }
            print!("{}", table(&rows));
            Ok(())
        }
        other => Err(OciError::Usage(format!(
            "unknown format {other:?} (expected table or json)"
        ))),
    }
}

/// Columns padded to their widest cell plus a space (Go's tabwriter, as runc uses it).
fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.len());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}", w = widths[i] + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `spec`: a default config.json (a shell on a terminal), as `runc spec` writes it.
pub(super) fn spec(args: &SpecArgs) -> Result<()> {
    let path = args.bundle.join("config.json");
    if path.exists() {
        return Err(OciError::Usage(format!(
            "{} exists; remove it first",
            path.display()
        )));
    }
    let spec = Spec::default();
    let text = serde_json::to_string_pretty(&spec).map_err(|e| OciError::Runtime(e.to_string()))?;
    std::fs::write(&path, text + "\n")
        .map_err(|e| OciError::io(format!("write {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_like_tabwriter() {
        let rows = [
            ["ID".to_string(), "PID".into()],
            ["long-id".to_string(), "1".into()],
        ];
        assert_eq!(table(&rows), "ID        PID\nlong-id   1\n");
    }
}
