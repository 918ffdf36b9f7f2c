//! A small logger: messages at or above the chosen verbosity go to the log file (or to
//! stderr when there is none), each with the time since start.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context;

struct Logger {
    level: log::LevelFilter,
    file: Option<Mutex<File>>,
    start: Instant,
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= self.level
    }

    fn log(&self, r: &log::Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let t = self.start.elapsed().as_secs_f64();
        let line = format!("({t:>9.6}) {:<5} {}\n", r.level(), r.args());
        match &self.file {
            Some(f) => {
                if let Ok(mut f) = f.lock() {
                    let _ = f.write_all(line.as_bytes());
                }
            }
            // Errors are printed by main itself; stderr gets the rest.
            None if r.level() != log::Level::Error => eprint!("{line}"),
            None => {}
        }
    }

    fn flush(&self) {}
}

/// 0: nothing but errors, 1: errors, 2: warnings, 3: info, 4: debug and trace.
pub fn init(verbosity: u8, file: Option<&Path>) -> anyhow::Result<()> {
    let level = match verbosity {
        0 | 1 => log::LevelFilter::Error,
        2 => log::LevelFilter::Warn,
        3 => log::LevelFilter::Info,
        _ => log::LevelFilter::Trace,
    };
    let file = match file {
        Some(p) => {
            Some(Mutex::new(File::create(p).with_context(|| {
                format!("create log file {}", p.display())
            })?))
        }
        None => None,
    };
    let logger = Logger {
        level,
        file,
        start: Instant::now(),
    };
    log::set_boxed_logger(Box::new(logger)).context("install logger")?;
    log::set_max_level(level);
    Ok(())
}
