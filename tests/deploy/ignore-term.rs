//! tests/deploy/docker.sh's stubborn server: ignores SIGTERM, runs the
//! command given as its child (which may end) and then lives on until
//! SIGKILL, so that a stop must go through STOP_TIMEOUT and SIGKILL.
use std::process::Command;
use std::time::Duration;

extern "C" {
    fn signal(signum: i32, handler: usize) -> usize;
}

fn main() {
    const SIGTERM: i32 = 15;
    const SIG_IGN: usize = 1;
    // SAFETY: signal(2) with SIG_IGN installs no handler code.
    unsafe { signal(SIGTERM, SIG_IGN) };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        eprintln!("usage: ignore-term COMMAND [ARGS...]");
        std::process::exit(2);
    };
    match Command::new(cmd).args(rest).spawn() {
        Ok(mut child) => {
            let _ = child.wait();
        }
        Err(e) => eprintln!("ignore-term: cannot run {cmd}: {e}"),
    }
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
