//! `flytewasm plugins --addr URL`: what a running `serve` has loaded, from
//! its `/plugins` endpoint.

use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::registry::PluginStatus;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The HTTP address of `flytewasm serve` (its --http).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub addr: String,
    /// Print the JSON as served.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let url = format!("{}/plugins", args.addr.trim_end_matches('/'));
    let uri: hyper::Uri = url
        .parse()
        .map_err(|err| anyhow::anyhow!("--addr {}: {err}", args.addr))?;
    let body = tokio::runtime::Runtime::new()?.block_on(async {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
        let response = client
            .get(uri)
            .await
            .map_err(|err| anyhow::anyhow!("cannot reach {url}: {err}"))?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::ensure!(status.is_success(), "{url} answered {status}");
        Ok::<_, anyhow::Error>(body)
    })?;
    if args.json {
        println!("{}", String::from_utf8_lossy(&body));
        return Ok(());
    }
    let plugins: Vec<PluginStatus> = serde_json::from_slice(&body)
        .map_err(|err| anyhow::anyhow!("{url} did not answer a plugin list: {err}"))?;
    println!(
        "{:<8} {:<12} {:<10} {:<19} {:<9} {:<24} {:<24} FILE / LAST ERROR",
        "STATE", "ID", "VERSION", "DIGEST", "TIER", "TASK TYPES", "LOADED AT"
    );
    for p in plugins {
        let state = serde_json::to_value(p.state).unwrap();
        let digest = p.digest.unwrap_or_default();
        let tier = p.tier.map(|t| serde_json::to_value(t).unwrap());
        println!(
            "{:<8} {:<12} {:<10} {:<19} {:<9} {:<24} {:<24} {}",
            state.as_str().unwrap_or_default(),
            p.id.unwrap_or_else(|| "-".into()),
            p.version.unwrap_or_else(|| "-".into()),
            digest.get(..19).unwrap_or(&digest),
            tier.as_ref().and_then(|t| t.as_str()).unwrap_or("-"),
            p.task_types.join(", "),
            p.loaded_at.unwrap_or_else(|| "-".into()),
            p.file.display()
        );
        if let Some(error) = p.last_error {
            println!("{:>8} last error: {error}", "");
        }
    }
    Ok(())
}
