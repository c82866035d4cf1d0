use std::process::ExitCode;

use cp_mod_migrator::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse_checked();
    cp_mod_migrator::logging::init(cli.global.log_format);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cp-mod-migrator: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(cli::execute(cli))
}
