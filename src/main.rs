//! CLI entry point: parse arguments, set up logging, dispatch.

mod cli;

use std::process::ExitCode;

use clap::Parser;

use churnstile::config::{self, Config, LogFormat};
use churnstile::doctor::{render_text, run_doctor};
use churnstile::logging;
use cli::{Cli, Command, DoctorArgs};

/// Exit status for configuration errors (as `check-config` promises).
const EXIT_CONFIG: u8 = 2;

/// Exit status when the doctor cannot run at all: as bad as a problem found,
/// so scripts that act on 2 do not mistake it for health or a warning.
const EXIT_DOCTOR_FAILED: u8 = 2;

/// Exit status of `import-pgbouncer` when the configuration was written but
/// some settings were not carried over (listed on stderr).
const EXIT_IMPORT_DROPPED: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::CheckConfig { file }) => {
            logging::init(LogFormat::Text);
            check_config(&file)
        }
        Some(Command::ImportPgbouncer { file, output }) => {
            import_pgbouncer(&file, output.as_deref())
        }
        Some(Command::Doctor(args)) => {
            logging::init(LogFormat::Text);
            doctor(&args)
        }
        // No logging: it would scribble over the view.
        Some(Command::Top { metrics }) => match churnstile::top::run(&metrics) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("churnstile top: {error}");
                ExitCode::FAILURE
            }
        },
        None => match load(&cli) {
            Ok(config) => {
                // The configuration says how to log, so it is read first.
                logging::init(config.general.observe.log_format);
                run(config, &cli)
            }
            Err(message) => {
                eprintln!("{message}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match config::load_file(file) {
        Ok(config) => {
            println!(
                "{}: OK ({} databases, {} users)",
                file.display(),
                config.databases.len(),
                config.users.len()
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// Writes the converted configuration and lists what was dropped: exit 0
/// when nothing was, 3 when something was, 2 when the input cannot be read
/// or the result does not pass check-config (it is still written).
fn import_pgbouncer(file: &std::path::Path, output: Option<&std::path::Path>) -> ExitCode {
    let checked_as = output.unwrap_or(std::path::Path::new("churnstile.toml"));
    let import = match churnstile::import::import_pgbouncer(file, checked_as) {
        Ok(import) => import,
        Err(error) => {
            eprintln!("churnstile import-pgbouncer: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    for dropped in &import.dropped {
        eprintln!("{dropped}");
    }
    let written = match output {
        Some(path) => std::fs::write(path, &import.toml)
            .map_err(|error| format!("cannot write {}: {error}", path.display())),
        None => {
            print!("{}", import.toml);
            Ok(())
        }
    };
    if let Err(message) = written {
        eprintln!("churnstile import-pgbouncer: {message}");
        return ExitCode::from(EXIT_CONFIG);
    }
    if let Some(errors) = &import.invalid {
        eprintln!("the converted configuration does not pass check-config yet:\n{errors}");
        ExitCode::from(EXIT_CONFIG)
    } else if import.dropped.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "{} setting(s) not carried over; the rest is in the configuration",
            import.dropped.len()
        );
        ExitCode::from(EXIT_IMPORT_DROPPED)
    }
}

/// Exit status 0 healthy, 1 warnings, 2 problems (or a configuration error).
fn doctor(args: &DoctorArgs) -> ExitCode {
    let options = match args.options() {
        Ok(options) => options,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_DOCTOR_FAILED);
        }
    };
    let report = runtime.block_on(run_doctor(&options));
    if args.json {
        match report.to_json() {
            Ok(json) => println!("{json}"),
            Err(error) => {
                eprintln!("cannot render the report as JSON: {error}");
                return ExitCode::from(EXIT_DOCTOR_FAILED);
            }
        }
    } else {
        print!("{}", render_text(&report));
    }
    ExitCode::from(report.status.exit_code())
}

/// The configuration from `--config` or the zero-config flags.
fn load(cli: &Cli) -> Result<Config, String> {
    if let Some(flags) = cli.sidecar()? {
        return config::sidecar_config(&flags, &|name| std::env::var(name).ok())
            .map_err(|error| error.to_string());
    }
    let Some(path) = &cli.config else {
        return Err(
            "nothing to run: give --config FILE, or --listen ADDR --upstream URL (see --help)"
                .into(),
        );
    };
    config::load_file(path).map_err(|errors| errors.to_string())
}

fn run(mut config: Config, cli: &Cli) -> ExitCode {
    if let Some(addr) = cli.metrics_listen {
        config.general.observe.metrics_listen = Some(addr);
    }
    let mut builder = match config.general.worker_threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        threads => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(threads);
            builder
        }
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(churnstile::server::run::run(config, cli.config.clone())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("churnstile: {error}");
            ExitCode::FAILURE
        }
    }
}
