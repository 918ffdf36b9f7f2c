//! `stasis`: checkpoint and restore Linux processes.

mod demo;
mod logger;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "stasis",
    version,
    about = "Checkpoint and restore Linux processes"
)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command accepts, spelled as CRIU spells them.
#[derive(Args, Debug, Clone)]
struct Global {
    /// Write a log of what was done to FILE (relative paths are in the work directory).
    #[arg(short = 'o', long = "log-file", global = true, value_name = "FILE")]
    log_file: Option<PathBuf>,
    /// Verbosity 0-4: -v alone means 3 (info), -v4 everything.
    #[arg(short = 'v', global = true, num_args = 0..=1, default_missing_value = "3", value_name = "N", require_equals = false)]
    v: Option<u8>,
    /// Verbosity 0-4.
    #[arg(long = "verbosity", global = true, value_name = "N")]
    verbosity: Option<u8>,
    /// Directory for the log and other working files (default: the images directory).
    #[arg(short = 'W', long = "work-dir", global = true, value_name = "DIR")]
    work_dir: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Freeze a process, save it to an image directory, then kill it.
    Dump(DumpArgs),
    /// Bring a process back from an image directory.
    Restore(RestoreArgs),
    /// Report which kernel features stasis relies on are present.
    Check(CheckArgs),
    /// Print an image (a directory or one of its files) for a person, or as JSON.
    Show(ShowArgs),
    /// Checkpoint a bundled counting program, kill it, restore it, and watch it go on.
    Demo(DemoArgs),
    /// The bundled program the demo checkpoints.
    #[command(hide = true)]
    DemoCounter { out: PathBuf },
}

#[derive(Args, Debug)]
struct DumpArgs {
    /// The process to dump.
    #[arg(short = 't', long = "tree", value_name = "PID")]
    tree: i32,
    /// Where to write the image (created if missing).
    #[arg(short = 'D', long = "images-dir", value_name = "DIR")]
    images_dir: PathBuf,
    /// Let the process go on after the dump.
    #[arg(short = 'R', long = "leave-running", conflicts_with = "leave_stopped")]
    leave_running: bool,
    /// Leave the process stopped (as by SIGSTOP) after the dump.
    #[arg(short = 's', long = "leave-stopped")]
    leave_stopped: bool,
    /// The process uses the terminal it was started from.
    #[arg(short = 'j', long = "shell-job")]
    shell_job: bool,
    /// Save the file locks (POSIX, OFD, flock) the tree holds; without it a held lock
    /// makes the dump fail.
    #[arg(short = 'l', long = "file-locks")]
    file_locks: bool,
    /// Give files deleted while open a name in their directory (link_remap.PID.N) instead
    /// of saving their contents; restore opens and removes it.
    #[arg(long = "link-remap")]
    link_remap: bool,
    /// Accept unix sockets connected to a peer outside the dumped tree. At restore a
    /// datagram socket whose peer has a name connects to that name again; any other
    /// such socket finds its peer gone (what was queued for it, then end of file).
    #[arg(long = "ext-unix-sk")]
    ext_unix_sk: bool,
}

#[derive(Args, Debug)]
struct RestoreArgs {
    /// The image to restore.
    #[arg(short = 'D', long = "images-dir", value_name = "DIR")]
    images_dir: PathBuf,
    /// Return as soon as the process runs instead of waiting for it.
    #[arg(short = 'd', long = "restore-detached")]
    detached: bool,
    /// Write the restored PID to FILE.
    #[arg(long = "pidfile", value_name = "FILE")]
    pidfile: Option<PathBuf>,
    /// Give the restored process the current terminal.
    #[arg(short = 'j', long = "shell-job")]
    shell_job: bool,
    /// Restore into a new PID namespace (with a minimal init as its PID 1), so that the
    /// image's PIDs are free even while the original runs, or for several copies at once.
    #[arg(long = "new-pidns")]
    new_pidns: bool,
    /// Restore the tree as a sibling of stasis (a child of stasis's parent, which reaps it);
    /// stasis returns as soon as it runs.
    #[arg(long = "restore-sibling")]
    restore_sibling: bool,
    /// Restore into a new time namespace in which CLOCK_MONOTONIC and CLOCK_BOOTTIME go on
    /// from where they were at dump, instead of jumping by the time the image waited.
    #[arg(long = "time-ns")]
    time_ns: bool,
    /// Accepted as CRIU accepts it: the locks an image holds are always taken again.
    #[arg(short = 'l', long = "file-locks")]
    _file_locks: bool,
}

#[derive(Args, Debug)]
struct CheckArgs {
    /// Check one feature by name.
    #[arg(long = "feature", value_name = "NAME")]
    feature: Option<String>,
}

#[derive(Args, Debug)]
struct ShowArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// An image directory or one file of it.
    path: PathBuf,
}

#[derive(Args, Debug)]
struct DemoArgs {
    /// Where to keep the demo's image and output (default: a fresh temporary directory).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let msg = error_text(&e);
            log::error!("{msg}");
            eprintln!("stasis: error: {msg}");
            ExitCode::from(1)
        }
    }
}

/// The error and its causes, leaving out a cause whose text the message already shows
/// (our error types print their source inline).
fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn verbosity(g: &Global) -> anyhow::Result<u8> {
    let v = g.verbosity.or(g.v).unwrap_or(2);
    if v > 4 {
        bail!("verbosity must be 0-4, not {v}");
    }
    Ok(v)
}

fn setup_log(g: &Global, images_dir: Option<&Path>) -> anyhow::Result<()> {
    let level = verbosity(g)?;
    let file = match &g.log_file {
        None => None,
        Some(f) if f.is_absolute() => Some(f.clone()),
        Some(f) => {
            let base = g
                .work_dir
                .as_deref()
                .or(images_dir)
                .unwrap_or(Path::new("."));
            std::fs::create_dir_all(base)
                .with_context(|| format!("create work directory {}", base.display()))?;
            Some(base.join(f))
        }
    };
    logger::init(level, file.as_deref())
}

fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Dump(a) => {
            setup_log(&cli.global, Some(&a.images_dir))?;
            let summary = stasis::dump(&stasis::DumpOptions {
                pid: a.tree,
                images_dir: a.images_dir.clone(),
                leave_running: a.leave_running,
                leave_stopped: a.leave_stopped,
                shell_job: a.shell_job,
                file_locks: a.file_locks,
                link_remap: a.link_remap,
                ext_unix_sk: a.ext_unix_sk,
            })
            .with_context(|| format!("dump of pid {} failed", a.tree))?;
            log::info!(
                "dumped pid {} into {}: {} pages, frozen for {:?}, total {:?}",
                summary.pid,
                a.images_dir.display(),
                summary.pages,
                summary.frozen_for,
                summary.total
            );
            Ok(0)
        }
        Command::Restore(a) => {
            setup_log(&cli.global, Some(&a.images_dir))?;
            let restored = stasis::restore(&stasis::RestoreOptions {
                images_dir: a.images_dir.clone(),
                shell_job: a.shell_job,
                pidfile: a.pidfile.clone(),
                new_pidns: a.new_pidns,
                sibling: a.restore_sibling,
                time_ns: a.time_ns,
            })
            .with_context(|| format!("restore from {} failed", a.images_dir.display()))?;
            // A sibling is not our child: its parent (ours) waits for it.
            if a.detached || a.restore_sibling {
                return Ok(0);
            }
            let status = restored.wait()?;
            log::info!("restored pid {} ended: {status:?}", restored.root_pid);
            Ok(status.code().clamp(0, 255) as u8)
        }
        Command::Check(a) => {
            setup_log(&cli.global, None)?;
            check(a.feature.as_deref())
        }
        Command::Show(a) => {
            setup_log(&cli.global, None)?;
            show(&a.path, a.json)
        }
        Command::Demo(a) => {
            setup_log(&cli.global, None)?;
            demo::run(a.dir)
        }
        Command::DemoCounter { out } => demo::counter(&out),
    }
}

fn check(feature: Option<&str>) -> anyhow::Result<u8> {
    let list = match feature {
        Some(name) => match stasis::check::probe(name) {
            Some(f) => vec![f],
            None => bail!(
                "unknown feature {name:?}; known features: {}",
                stasis::check::names().join(", ")
            ),
        },
        None => stasis::check::probe_all(),
    };
    let mut missing_required = false;
    for f in &list {
        let state = if f.present { "present" } else { "MISSING" };
        let req = if f.required { "required" } else { "optional" };
        println!("{:<32} {:<8} {:<9} {}", f.name, state, req, f.detail);
        if f.required && !f.present {
            missing_required = true;
        }
    }
    if feature.is_some() {
        return Ok(if list[0].present { 0 } else { 1 });
    }
    if missing_required {
        println!("Some features dump/restore needs are missing.");
        Ok(1)
    } else {
        println!("Looks good: everything dump and restore need is present.");
        Ok(0)
    }
}

fn show(path: &Path, json: bool) -> anyhow::Result<u8> {
    if path.is_dir() {
        let reader = stasis_image::ImageReader::open(path)
            .with_context(|| format!("cannot read image {}", path.display()))?;
        if json {
            let v = stasis_image::render::render_json(&reader)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            print!("{}", stasis_image::render::render_text(&reader)?);
        }
    } else if json {
        let v = stasis_image::render::render_path_json(path)?;
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", stasis_image::render::render_file_text(path)?);
    }
    Ok(0)
}
