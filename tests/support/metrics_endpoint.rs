//! The Prometheus endpoint as tests read it: a proxy serving it on a free
//! port, plain HTTP/1.1 requests, and samples by name and labels.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::proxy_config::{layered_config, pg_base_config};
use super::wait::poll_until;
use super::{APP_DB, MD5_USER, MYSQL_APP_USER, PgServer, Proxy, free_port};

/// A proxy for `pg` with the metrics endpoint on a free port, and `extra`
/// TOML merged over that.
pub fn proxy_with_metrics(pg: &PgServer, extra: &str) -> (Proxy, SocketAddr) {
    let metrics = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
    let endpoint = format!("[general]\nmetrics_listen = \"{metrics}\"\n");
    let config = layered_config(&pg_base_config(pg), &[&endpoint, extra]);
    (Proxy::start(&config), metrics)
}

/// One HTTP/1.1 request with `Connection: close`; returns status line and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connecting to the metrics endpoint {addr}: {e}"));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .expect("the endpoint answers and closes within 10 s")
    .unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {response:?}"));
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

pub async fn scrape(addr: SocketAddr) -> String {
    let (status, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    body
}

/// The value of the sample `name{labels}` (labels in any order, all given).
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((series_name, rest)) => (series_name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let found: Vec<(&str, &str)> = series_labels
                .split(',')
                .filter_map(|pair| {
                    let (key, value) = pair.split_once('=')?;
                    Some((key, value.trim_matches('"')))
                })
                .collect();
            (series_name == name
                && found.len() == labels.len()
                && labels.iter().all(|label| found.contains(label)))
            .then(|| value.parse().ok())?
        })
}

pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(text, name, labels).unwrap_or_else(|| panic!("no sample {name}{labels:?} in:\n{text}"))
}

/// Scrapes until `name{labels}` equals `expected` and returns that scrape;
/// panics after `timeout`.
pub async fn scrape_until(
    addr: SocketAddr,
    name: &str,
    labels: &[(&str, &str)],
    expected: f64,
    timeout: Duration,
) -> String {
    let what = format!("{name}{labels:?} reaching {expected}");
    poll_until(&what, timeout, async || {
        let text = scrape(addr).await;
        match sample(&text, name, labels) {
            Some(seen) if seen == expected => Ok(text),
            seen => Err(seen),
        }
    })
    .await
}

/// The labels of app/md5_user's pool series, plus `extra`.
pub fn pool_labels<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    labels_of(MD5_USER.name, "postgres", extra)
}

/// The labels of the MySQL app/appuser pool's series, plus `extra`.
pub fn mysql_pool_labels<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    labels_of(MYSQL_APP_USER.name, "mysql", extra)
}

fn labels_of<'a>(
    user: &'a str,
    protocol: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut labels = vec![("database", APP_DB), ("user", user), ("protocol", protocol)];
    labels.extend_from_slice(extra);
    labels
}
