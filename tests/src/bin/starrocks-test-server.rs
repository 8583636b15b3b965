//! `starrocks-test-server`: runs the fake StarRocks Stream Load cluster
//! ([`firn_tests::stream_load`]) standalone, prints its FE/BE URLs and serves until
//! SIGINT/SIGTERM. Does I/O.
//!
//! Usage: `starrocks-test-server [--fe ADDR] [--be ADDR]... [--user U] [--password P]
//! [--advertised-be-host HOST] [--follower-fe ADDR]` (addresses default to `127.0.0.1:0`;
//! the follower FE is off unless given).

use std::io::Write;
use std::net::SocketAddr;

use firn_tests::stream_load::{StreamLoadConfig, StreamLoadServer};

fn parse_args() -> Result<StreamLoadConfig, String> {
    let mut config = StreamLoadConfig::default();
    let mut bes: Vec<SocketAddr> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--fe" => config.fe_addr = value()?.parse().map_err(|e| format!("--fe: {e}"))?,
            "--be" => bes.push(value()?.parse().map_err(|e| format!("--be: {e}"))?),
            "--user" => config.user = value()?,
            "--password" => config.password = value()?,
            "--advertised-be-host" => config.advertised_be_host = Some(value()?),
            "--follower-fe" => {
                config.follower_fe_addr = Some(
                    value()?
                        .parse()
                        .map_err(|e| format!("--follower-fe: {e}"))?,
                )
            }
            "-h" | "--help" => {
                println!(
                    "starrocks-test-server [--fe ADDR] [--be ADDR]... [--user U] [--password P] [--advertised-be-host HOST] [--follower-fe ADDR]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !bes.is_empty() {
        config.be_addrs = bes;
    }
    Ok(config)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = parse_args().map_err(anyhow::Error::msg)?;
    let server = StreamLoadServer::start(config).await?;
    // One write, and a reader that went away is not the server's problem: it keeps serving.
    let mut banner = format!("FE {}\n", server.fe_url());
    if let Some(follower) = server.follower_url() {
        banner.push_str(&format!("follower FE {follower}\n"));
    }
    for be in server.be_urls() {
        banner.push_str(&format!("BE {be}\n"));
    }
    banner.push_str(&format!("control {}/__fake/\n", server.fe_url()));
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(banner.as_bytes())
        .and_then(|()| stdout.flush());
    drop(stdout);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    server.shutdown();
    Ok(())
}
