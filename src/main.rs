//! The `wren` binary: command line -> config -> serve, or one of the
//! commands beside the server (`wren keys …`).

use std::io::{self, ErrorKind, Write};
use std::process::ExitCode;
use std::sync::Arc;

use signal_hook::consts::SIGHUP;
use signal_hook::iterator::Signals;
use wren::config::EarlyExit;
use wren::http::Server;
use wren::http::log::{self, Logger};
use wren::{App, Command, Config, routes};

fn main() -> ExitCode {
    let code = run();
    // The log is written by a background thread; let it finish.
    log::flush();
    code
}

fn run() -> ExitCode {
    match Command::from_env() {
        Ok(Command::Serve(config)) => serve(*config),
        Ok(Command::Keys(command)) => match wren::commands::keys(&command) {
            Ok(output) => print(&output),
            Err(problem) => early_exit(&EarlyExit {
                output: format!("error: {problem}"),
                code: 2,
            }),
        },
        Err(exit) => early_exit(&exit),
    }
}

fn serve(config: Config) -> ExitCode {
    let logger = Logger::new(config.log_format);
    // Panics inside handlers become 500s; the hook puts the panic in the log
    // in the log's own format.
    std::panic::set_hook(Box::new(move |info| {
        logger.error(&format!("panic: {info}"))
    }));

    if let Err(err) = std::fs::create_dir_all(&config.data_dir) {
        logger.error(&format!(
            "cannot create the data folder {}: {err}",
            config.data_dir.display()
        ));
        return ExitCode::FAILURE;
    }
    let server = match Server::bind(config.addr, config.limits.clone(), logger) {
        Ok(server) => server,
        Err(err) => {
            logger.error(&format!("cannot listen on {}: {err}", config.addr));
            return ExitCode::FAILURE;
        }
    };
    let addr = server.local_addr().unwrap_or(config.addr);
    // Registered before the slow start (password hashing, model loading),
    // so that an early SIGHUP is queued instead of killing the process.
    let sighup = match Signals::new([SIGHUP]) {
        Ok(signals) => signals,
        Err(err) => {
            logger.error(&format!("cannot watch for SIGHUP: {err}"));
            return ExitCode::FAILURE;
        }
    };
    let app = match App::open(config) {
        Ok(app) => Arc::new(app),
        Err(err) => {
            logger.error(&format!("cannot start: {err}"));
            return ExitCode::FAILURE;
        }
    };
    if let Err(err) = reload_model_on_sighup(sighup, Arc::clone(&app), logger) {
        logger.error(&format!("cannot start the SIGHUP thread: {err}"));
        return ExitCode::FAILURE;
    }
    let router = routes::table(&app);
    logger.info(&app.config.events.explain(addr.ip()));
    logger.info(&format!(
        "wren {} listening on http://{addr}",
        env!("CARGO_PKG_VERSION")
    ));
    match server.run(move |request: &mut wren::http::Request<'_>| router.dispatch(&app, request)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            logger.error(&format!("server failed: {err}"));
            ExitCode::FAILURE
        }
    }
}

/// Help or version text goes to stdout (exit 0), an error to stderr.
fn early_exit(exit: &EarlyExit) -> ExitCode {
    if exit.code == 0 {
        return print(&exit.output);
    }
    // Nothing is left to report a failing stderr on.
    let _ = writeln!(io::stderr().lock(), "{}", exit.output.trim_end());
    ExitCode::from(exit.code)
}

/// Writes `text` to stdout. A reader that has gone away (`wren --help |
/// head -1`) ends the command as if it had read it all, as in ripgrep: Rust
/// ignores SIGPIPE, so the closed pipe surfaces here as EPIPE, and
/// `println!` would panic on it.
fn print(text: &str) -> ExitCode {
    let mut stdout = io::stdout().lock();
    match writeln!(stdout, "{}", text.trim_end()).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.kind() == ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(err) => {
            let _ = writeln!(io::stderr().lock(), "error: cannot write to stdout: {err}");
            ExitCode::FAILURE
        }
    }
}

/// SIGHUP reloads the model from its file; a file that fails to load is
/// reported and the running model stays.
fn reload_model_on_sighup(
    mut signals: Signals,
    app: Arc<App>,
    logger: Logger,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("model-reload".into())
        .spawn(move || {
            for _ in signals.forever() {
                match app.model.reload() {
                    Ok(model) => {
                        logger.info(&format!("model reloaded: {} {}", model.name, model.version))
                    }
                    Err(err) => {
                        let running = app.model.get();
                        logger.error(&format!(
                            "model reload failed, still serving {} {}: {err}",
                            running.name, running.version
                        ));
                    }
                }
            }
        })?;
    Ok(())
}
