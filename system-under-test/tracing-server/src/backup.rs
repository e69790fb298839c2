//! `tracing-server backup --out FILE` and `restore --from FILE`: seed
//! 003's backup procedure as `pg_dump -Fc` / `pg_restore` of the `tracing`
//! schema of the configured database.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::Config;

/// `pg_dump`/`pg_restore`: from `TRACING_PG_BIN_DIR` when set, else the
/// PATH, else Debian's PostgreSQL 15 directory.
fn program(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("TRACING_PG_BIN_DIR") {
        return Path::new(&dir).join(name);
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file());
    on_path.unwrap_or_else(|| Path::new("/usr/lib/postgresql/15/bin").join(name))
}

fn run(mut cmd: Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {what} ({}): {e}; install PostgreSQL's client tools or set TRACING_PG_BIN_DIR", cmd.get_program().to_string_lossy()))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

pub fn backup(cfg: &Config, out: &Path) -> Result<(), String> {
    let mut cmd = Command::new(program("pg_dump"));
    cmd.arg("--format=custom")
        .arg("--schema=tracing")
        .arg("--file")
        .arg(out)
        .arg("--dbname")
        .arg(&cfg.database_url);
    run(cmd, "pg_dump")
}

pub fn restore(cfg: &Config, from: &Path) -> Result<(), String> {
    if !from.is_file() {
        return Err(format!("--from {}: no such file", from.display()));
    }
    let mut cmd = Command::new(program("pg_restore"));
    cmd.arg("--clean")
        .arg("--if-exists")
        .arg("--single-transaction")
        .arg("--exit-on-error")
        .arg("--no-owner")
        .arg("--dbname")
        .arg(&cfg.database_url)
        .arg(from);
    run(cmd, "pg_restore")
}
