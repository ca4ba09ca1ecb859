//! The servers reach PostgreSQL over TLS when the database URL asks for it with libpq's
//! parameters (`sslmode`, `sslrootcert`), as managed databases require, and check the
//! database's certificate as asked (PostgreSQL suite only). The database is the suite's own:
//! Debian's package turns TLS on with a self-signed certificate (the `ssl-cert` package's
//! "snakeoil" one), which is therefore its own CA.

use std::time::Duration;

use crate::helpers::*;

/// How long a server that cannot reach its database may take to say so and exit.
const REFUSAL: Duration = Duration::from_secs(30);

/// The database server's certificate: its file (`ssl_cert_file`) and the DNS names it was
/// issued for (read by `openssl`, which Debian's `ssl-cert` package depends on).
async fn database_certificate(database: &TestDatabase) -> (String, Vec<String>) {
    assert_eq!(
        database.query_text("SHOW ssl").await,
        "on",
        "this test needs PostgreSQL with TLS on (ssl = on, Debian's default)"
    );
    let file = database.query_text("SHOW ssl_cert_file").await;
    let output = run_command(
        "openssl",
        ["x509", "-noout", "-ext", "subjectAltName", "-in", &file]
            .map(String::from)
            .to_vec(),
        Duration::from_secs(10),
    )
    .await;
    let text = String::from_utf8_lossy(&output.stdout);
    let names: Vec<String> = text
        .split([',', '\n'])
        .filter_map(|entry| entry.trim().strip_prefix("DNS:"))
        .map(str::to_owned)
        .collect();
    assert!(!names.is_empty(), "no DNS name in {file}: {text}");
    (file, names)
}

/// `database`'s URL with `host` as its host name, reached at the address it had, and the
/// TLS parameters `tls`.
async fn url_with(database: &TestDatabase, host: &str, tls: &str) -> String {
    let (scheme, rest) = database.url.split_once("://").expect("a URL");
    let (authority, path) = rest.split_once('/').expect("a database name");
    let path = path.split('?').next().unwrap_or(path);
    let (user, host_port) = match authority.rsplit_once('@') {
        Some((user, host_port)) => (format!("{user}@"), host_port),
        None => (String::new(), authority),
    };
    let address = tokio::net::lookup_host(host_port)
        .await
        .ok()
        .and_then(|mut addresses| addresses.next())
        .unwrap_or_else(|| panic!("cannot resolve {host_port}"));
    format!(
        "{scheme}://{user}{host}:{}/{path}?hostaddr={}&{tls}",
        address.port(),
        address.ip()
    )
}

/// Starts a server on `url`; it must fail, and its output is returned.
async fn refused_start(url: &str) -> String {
    let data = tempfile::tempdir().expect("a data directory");
    let output = run_command(
        server_binary(),
        vec![
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--data-dir".into(),
            data.path().display().to_string(),
            "--database-url".into(),
            url.to_owned(),
        ],
        REFUSAL,
    )
    .await;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "started on {url}:\n{said}");
    said
}

/// How many of the servers' sessions on `database` are encrypted, and how many there are.
async fn encrypted_sessions(database: &TestDatabase) -> String {
    database
        .query_text(
            "SELECT count(*) FILTER (WHERE s.ssl) || ' of ' || count(*)
             FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
             WHERE a.datname = current_database() AND a.application_name = 'chat-server'",
        )
        .await
}

#[tokio::test]
async fn a_server_reaches_postgresql_over_tls_and_checks_the_certificate_as_asked() {
    let Some(database) = TestDatabase::for_backend().await else {
        return;
    };
    let (certificate, names) = database_certificate(&database).await;
    let url = url_with(
        &database,
        &names[0],
        &format!("sslmode=verify-full&sslrootcert={certificate}"),
    )
    .await;

    // The URL of a managed database's console: the server starts, serves, and every one of
    // its sessions (the pool's and the listener's) is encrypted.
    let server = spawn_sqlite_process(&["--database-url", &url]).await;
    let (alice, bob, chat) = alice_and_bob(&server).await;
    send_text(&mut server.chat().await, &alice, &chat, "c1", "over TLS").await;
    let history = history_of(&server, &bob, &chat).await;
    assert_eq!(
        history.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
        ["over TLS"]
    );
    let sessions = encrypted_sessions(&database).await;
    let (encrypted, all) = sessions.split_once(" of ").expect("two counts");
    assert!(
        encrypted == all && all.parse::<u32>().expect("a count") >= 2,
        "{sessions} of the server's sessions encrypted"
    );
    drop(server);

    // A CA the URL names that did not issue the certificate: the server does not start, and
    // says why and what to do.
    let elsewhere = tempfile::tempdir().expect("a directory");
    let other_ca = elsewhere.path().join("other-ca.pem");
    let made = rcgen::generate_simple_self_signed(vec![names[0].clone()]).expect("a certificate");
    std::fs::write(&other_ca, made.cert.pem()).expect("write the CA");
    let said = refused_start(
        &url_with(
            &database,
            &names[0],
            &format!("sslmode=verify-full&sslrootcert={}", other_ca.display()),
        )
        .await,
    )
    .await;
    assert!(
        said.contains("the database's certificate was refused")
            && said.contains("sslrootcert=<its PEM file>"),
        "{said}"
    );

    // verify-full compares the host with the certificate's names; verify-ca does not, and
    // require without sslrootcert takes the certificate as it comes (libpq's meanings).
    let unnamed = "127.0.0.2";
    assert!(!names.iter().any(|name| name == unnamed), "{names:?}");
    let said = refused_start(
        &url_with(
            &database,
            unnamed,
            &format!("sslmode=verify-full&sslrootcert={certificate}"),
        )
        .await,
    )
    .await;
    assert!(
        said.contains("the database's certificate was not issued for \"127.0.0.2\""),
        "{said}"
    );
    for (tls, user) in [
        (
            format!("sslmode=verify-ca&sslrootcert={certificate}"),
            "carol",
        ),
        ("sslmode=require".to_owned(), "dave"),
    ] {
        until_no_sessions(&database).await;
        let url = url_with(&database, unnamed, &tls).await;
        let server = spawn_sqlite_process(&["--database-url", &url]).await;
        signed_up(&server, user).await;
        let sessions = encrypted_sessions(&database).await;
        let (encrypted, all) = sessions.split_once(" of ").expect("two counts");
        assert!(
            encrypted == all && all != "0",
            "{tls}: {sessions} encrypted"
        );
        drop(server);
    }
}

/// Waits until no server has a session on `database` (a killed one's linger a moment).
async fn until_no_sessions(database: &TestDatabase) {
    for _ in 0..100 {
        if encrypted_sessions(database).await.ends_with(" of 0") {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the servers' sessions on the database did not end within 5 s");
}

#[tokio::test]
async fn a_url_that_asks_for_no_tls_connects_as_before() {
    let Some(database) = TestDatabase::for_backend().await else {
        return;
    };
    let separator = if database.url.contains('?') { '&' } else { '?' };
    let url = format!("{}{separator}sslmode=prefer", database.url);
    let server = spawn_sqlite_process(&["--database-url", &url]).await;
    alice_alone(&server).await;
    let sessions = encrypted_sessions(&database).await;
    assert!(sessions.starts_with("0 of "), "{sessions}");
    assert_ne!(sessions, "0 of 0");
}
