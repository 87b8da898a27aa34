//! The `wren` binary: command line -> config -> serve, or one of the
//! commands beside the server (`wren keys …`).

use std::io::{self, ErrorKind, Write};
use std::process::ExitCode;
use std::sync::Arc;

use std::borrow::Cow;
use std::net::SocketAddr;

use signal_hook::consts::SIGHUP;
use signal_hook::iterator::Signals;
use wren::app::OpenError;
use wren::backup::BackupError;
use wren::backup::schedule::{self, Log};
use wren::certificates::{self, SiteCertificates};
use wren::config::{CertificateSource, EarlyExit};
use wren::cors::Cors;
use wren::handlers::rate;
use wren::http::log::{self, Logger};
use wren::http::redirect::Redirect;
use wren::http::{Endpoint, Request, Response, Server, Site, tls};
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
        Ok(Command::Backup(command)) => finish(wren::commands::backup(&command)),
        Ok(Command::Restore(command)) => finish(wren::commands::restore(&command)),
        Err(exit) => early_exit(&exit),
    }
}

fn serve(config: Config) -> ExitCode {
    let logger = Logger::new(config.log_format, config.log_level);
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
    // Certificate files are read before anything starts: a bad pair is a
    // usage error, as a bad flag is.
    let site_certificates = match config.tls.as_ref().map(SiteCertificates::open).transpose() {
        Ok(site_certificates) => site_certificates,
        Err(problem) => {
            return early_exit(&EarlyExit {
                output: format!("error: {problem}"),
                code: 2,
            });
        }
    };
    let mut endpoints = vec![Endpoint {
        addr: config.addr,
        tls: site_certificates
            .as_ref()
            .map(|site| tls::server_config(Arc::clone(&site.certificates))),
    }];
    let redirect_port = config.tls.as_ref().and_then(|tls| tls.redirect_port);
    if let Some(port) = redirect_port {
        endpoints.push(Endpoint {
            addr: SocketAddr::new(config.addr.ip(), port),
            tls: None,
        });
    }
    let server = match Server::bind(endpoints, config.limits.clone(), logger) {
        Ok(server) => server,
        Err((addr, err)) => {
            logger.error(&format!("cannot listen on {addr}: {err}"));
            return ExitCode::FAILURE;
        }
    };
    let addrs = server.local_addrs().unwrap_or_else(|_| vec![config.addr]);
    let addr = addrs[0];
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
        Err(OpenError::Database(problem)) => {
            return early_exit(&EarlyExit {
                output: format!("error: {problem}"),
                code: 2,
            });
        }
        Err(OpenError::Other(problem)) => {
            logger.error(&format!("cannot start: {problem}"));
            return ExitCode::FAILURE;
        }
    };
    let site_certificates = site_certificates.map(Arc::new);
    if let Err(err) = reload_on_sighup(sighup, Arc::clone(&app), site_certificates.clone(), logger)
    {
        logger.error(&format!("cannot start the SIGHUP thread: {err}"));
        return ExitCode::FAILURE;
    }
    let router = routes::table(&app);
    // What /metrics reports beside the application's own counters.
    app.metrics.attach_engine(server.stats());
    app.metrics.attach_routes(router.series());
    if let Some(site) = &site_certificates {
        app.metrics.attach_tls(Arc::clone(&site.expiry));
    }
    logger.info(&app.config.explain_settings());
    logger.info(&app.config.events.explain(addr.ip()));
    logger.info(&app.config.rate_limits.explain(addr.ip()));
    #[cfg(feature = "postgres")]
    if app.config.database.is_some() && app.config.storage.kind == wren::blob::StorageKind::Local {
        logger.warn(
            "--storage local with --database-url: files and their quotas stay in this \
             instance's data folder, so instances sharing the database share no files; \
             use --storage s3 for several instances",
        );
    }
    if let Some(plan) = app.config.backup.clone() {
        logger.info(&format!(
            "backups every {} into {}, keeping the newest {}",
            hours(plan.every),
            plan.to,
            plan.keep
        ));
        let log = Log {
            report: Box::new(move |report| {
                if let Some(line) = report.log_line("backup") {
                    logger.info(&line);
                }
            }),
            failed: Box::new(move |why| logger.error(why)),
        };
        let (data_dir, s3) = (app.config.data_dir.clone(), app.config.storage.s3.clone());
        if let Err(err) = schedule::start(plan, data_dir, s3, log) {
            logger.error(&format!("cannot start the backup thread: {err}"));
            return ExitCode::FAILURE;
        }
    }
    let scheme = if site_certificates.is_some() {
        "https"
    } else {
        "http"
    };
    logger.info(&format!(
        "wren {} listening on {scheme}://{addr}",
        env!("CARGO_PKG_VERSION")
    ));
    let tls_config = app.config.tls.clone();
    // CORS first (a preflight is answered from the route table), then
    // every request but a health check counts against its client's rate
    // limit before it is routed, so unmatched requests count too. What
    // those two answer themselves is counted as the router counts its own.
    let cors = Cors::new(&app.config.cors_origins);
    let dispatch = Arc::new(move |request: &mut Request<'_>| {
        let started = router.clock();
        let mut routed = false;
        let mut limited = |request: &mut Request<'_>| {
            rate::around(&app, request, |request| {
                routed = true;
                router.dispatch_since(&app, request, started)
            })
        };
        let response = match &cors {
            Some(cors) => cors.handle(&router, request, limited),
            None => limited(request),
        };
        if !routed {
            router.record_front(request, response.status(), started);
        }
        response
    });
    let mut sites = vec![Site {
        service: Box::new({
            let dispatch = Arc::clone(&dispatch);
            move |request: &mut Request<'_>| dispatch(request)
        }),
        headers: tls_config
            .as_ref()
            .and_then(|tls| tls.hsts_max_age)
            .map(|age| {
                (
                    "Strict-Transport-Security",
                    Cow::Owned(format!("max-age={age}")),
                )
            })
            .into_iter()
            .collect(),
    }];
    if let (Some(tls_config), Some(site_certificates), Some(&redirect_addr)) =
        (&tls_config, &site_certificates, addrs.get(1))
    {
        let https_port = tls_config.redirect_https_port.unwrap_or(addr.port());
        let redirect = Redirect {
            https_port,
            fallback_host: match &tls_config.certificate {
                CertificateSource::Acme(acme) => acme.domains.first().cloned(),
                CertificateSource::Files { .. } => None,
            },
        };
        let tokens = Arc::clone(&site_certificates.tokens);
        logger.info(&format!(
            "redirecting http://{redirect_addr} to https:// on port {https_port}"
        ));
        sites.push(Site {
            // Liveness stays reachable over plain HTTP (load balancers, and
            // operators while no certificate exists yet).
            service: Box::new(move |request: &mut Request<'_>| -> Response {
                if request.path() == "/status" {
                    dispatch(request)
                } else {
                    redirect.answer(request, &tokens)
                }
            }),
            headers: Vec::new(),
        });
    }
    if let Some(site_certificates) = &site_certificates
        && let Err(err) = certificates::start_acme(site_certificates, logger)
    {
        logger.error(&format!("cannot start ACME: {err}"));
        return ExitCode::FAILURE;
    }
    match server.run(sites) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            logger.error(&format!("server failed: {err}"));
            ExitCode::FAILURE
        }
    }
}

/// A backup's or a restore's summary goes to stdout; a refusal of what a
/// flag named is a usage error (exit 2), a failure on the way exit 1.
fn finish(outcome: Result<String, BackupError>) -> ExitCode {
    // The phases' log lines before the outcome.
    log::flush();
    match outcome {
        Ok(summary) => print(&summary),
        Err(err) => early_exit(&EarlyExit {
            output: format!("error: {err}"),
            code: match err {
                BackupError::Refused(_) => 2,
                BackupError::Failed(_) => 1,
            },
        }),
    }
}

/// A backup interval as its flag gives it (`24 h`, `0.5 h`), to the
/// millionth of an hour so that no float noise shows.
fn hours(every: std::time::Duration) -> String {
    let hours = every.as_secs_f64() / 3600.0;
    format!("{} h", (hours * 1e6).round() / 1e6)
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

/// SIGHUP reloads the model and the certificate files; a file that fails
/// to load is reported and the running model or certificate stays.
fn reload_on_sighup(
    mut signals: Signals,
    app: Arc<App>,
    site_certificates: Option<Arc<SiteCertificates>>,
    logger: Logger,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("reload".into())
        .spawn(move || {
            for _ in signals.forever() {
                match site_certificates.as_deref().map(SiteCertificates::reload) {
                    None | Some(Ok(None)) => {}
                    Some(Ok(Some(done))) => logger.info(&done),
                    Some(Err(err)) => logger.error(&format!(
                        "certificate reload failed, still serving the previous one: {err}"
                    )),
                }
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
