//! Progress of a long bench run on stderr: which row, which step, how long each has run.
//! On a terminal one status line is redrawn in place every second (the log lines of `say`
//! print above it); otherwise a plain line when the step changes, at most one every 10 s.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct State {
    started: Option<Instant>,
    row: String,
    row_started: Option<Instant>,
    step: String,
    last_plain: Option<Instant>,
    /// The status line is on the screen (to be cleared before other output).
    drawn: bool,
}

static STATE: Mutex<State> = Mutex::new(State {
    started: None,
    row: String::new(),
    row_started: None,
    step: String::new(),
    last_plain: None,
    drawn: false,
});
static TICKING: AtomicBool = AtomicBool::new(false);

fn tty() -> bool {
    std::io::stderr().is_terminal()
}

fn mins(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}", s / 60, s % 60)
}

fn status(st: &State) -> String {
    let total = st.started.map_or(Duration::ZERO, |t| t.elapsed());
    let row = st.row_started.map_or(Duration::ZERO, |t| t.elapsed());
    let mut s = format!("[{}] {} ({})", mins(total), st.row, mins(row));
    if !st.step.is_empty() {
        s += &format!(": {}", st.step);
    }
    // One terminal line: a long status would wrap and not be redrawn in place.
    s.chars().take(150).collect()
}

fn draw(st: &mut State) {
    let mut e = std::io::stderr().lock();
    let _ = write!(e, "\r{}\x1b[K", status(st));
    let _ = e.flush();
    st.drawn = true;
}

/// Starts the clock (and, on a terminal, the redraw thread, which ends with `finish`).
pub fn start() {
    if let Ok(mut st) = STATE.lock() {
        st.started = Some(Instant::now());
    }
    if tty() && !TICKING.swap(true, Ordering::SeqCst) {
        std::thread::spawn(|| {
            // Bounded by `finish` (and the process).
            while TICKING.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_secs(1));
                if let Ok(mut st) = STATE.lock() {
                    if !st.row.is_empty() && TICKING.load(Ordering::SeqCst) {
                        draw(&mut st);
                    }
                }
            }
        });
    }
}

/// A new row begins.
pub fn row(name: &str) {
    if let Ok(mut st) = STATE.lock() {
        st.row = name.to_string();
        st.row_started = Some(Instant::now());
        st.step.clear();
        if tty() {
            draw(&mut st);
        }
    }
}

/// The row's current step (a search rate, the storm's bound count, ...).
pub fn step(text: &str) {
    let Ok(mut st) = STATE.lock() else { return };
    if st.step == text {
        return;
    }
    st.step = text.to_string();
    if tty() {
        draw(&mut st);
    } else if st.last_plain.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
        st.last_plain = Some(Instant::now());
        eprintln!("bench: progress {}", status(&st));
    }
}

/// A log line, printed above the status line.
pub fn line(s: &str) {
    let Ok(mut st) = STATE.lock() else {
        eprintln!("{s}");
        return;
    };
    let mut e = std::io::stderr().lock();
    if st.drawn {
        let _ = write!(e, "\r\x1b[K");
    }
    let _ = writeln!(e, "{s}");
    drop(e);
    if st.drawn {
        draw(&mut st);
    }
}

/// Stops the redraw and clears the status line.
pub fn finish() {
    TICKING.store(false, Ordering::SeqCst);
    if let Ok(mut st) = STATE.lock() {
        if st.drawn {
            eprint!("\r\x1b[K");
            st.drawn = false;
        }
        st.row.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_names_row_step_and_elapsed_times() {
        let st = State {
            started: Some(Instant::now() - Duration::from_secs(125)),
            row: "boot storm of 100000 CPEs: Kea".into(),
            row_started: Some(Instant::now() - Duration::from_secs(5)),
            step: "41,200 of 100,000 bound".into(),
            last_plain: None,
            drawn: false,
        };
        assert_eq!(status(&st), "[2:05] boot storm of 100000 CPEs: Kea (0:05): 41,200 of 100,000 bound");
    }
}
