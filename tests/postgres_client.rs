//! wren's PostgreSQL client against a real server: logging in with
//! SCRAM, TLS in each `sslmode`, parameters and results of each kind,
//! errors that leave the connection usable and ones that break it.
//!
//! They run in the environment `scripts/with-postgres.sh` sets up (`make
//! test` runs them so): `WREN_TEST_DATABASE_URL` (a role that owns its
//! database) and `WREN_TEST_DATABASE_CA` (the server's self-signed
//! certificate). Without them each test returns at once, saying so,
//! unless `WREN_TEST_POSTGRES=required`. Each test works in tables of its
//! own.
#![cfg(feature = "postgres")]

mod common;

use std::time::Duration;

use common::postgres::url;

use wren::postgres::{Client, Config, Param, PgError, SslMode};

const TIMEOUT: Duration = Duration::from_secs(10);

fn connect(url: &str) -> Client {
    Client::connect(&Config::parse(url).unwrap(), TIMEOUT).unwrap()
}

/// Whether the session runs over TLS, as the server sees it.
fn server_sees_tls(client: &mut Client) -> bool {
    let rows = client
        .query(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap();
    rows[0].str(0).unwrap() == "t"
}

#[test]
fn values_of_each_kind_go_in_and_come_back() {
    let Some(url) = url("values") else { return };
    let mut client = connect(&url);
    client
        .batch_execute(
            "DROP TABLE IF EXISTS client_values;
             CREATE TABLE client_values (id BIGINT PRIMARY KEY, name TEXT, blob BYTEA)",
        )
        .unwrap();
    let blob: &[u8] = &[0, 1, 0xfe, 0xff, b'\\', b'x'];
    for (id, name) in [
        (1i64, Some("ann")),
        (2, None),
        (i64::MAX, Some("ünï'code\"; --")),
    ] {
        let inserted = client
            .execute(
                "INSERT INTO client_values (id, name, blob) VALUES ($1, $2, $3)",
                &[id.into(), name.into(), Param::Bytes(blob)],
            )
            .unwrap();
        assert_eq!(inserted, 1);
    }
    let rows = client
        .query(
            "SELECT id, name, blob FROM client_values WHERE id >= $1 ORDER BY id",
            &[1i64.into()],
        )
        .unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].i64(0).unwrap(), 1);
    assert_eq!(rows[0].text(1).unwrap(), Some("ann"));
    assert_eq!(rows[1].text(1).unwrap(), None);
    assert_eq!(rows[2].i64(0).unwrap(), i64::MAX);
    assert_eq!(rows[2].str(1).unwrap(), "ünï'code\"; --");
    for row in &rows {
        assert_eq!(row.bytes(2).unwrap().as_deref(), Some(blob));
    }
    assert!(rows[0].text(3).is_err(), "no fourth column");
    // The same statement again runs as prepared on this connection.
    let updated = client
        .execute(
            "UPDATE client_values SET name = $1 WHERE id <= $2",
            &["bob".into(), 2i64.into()],
        )
        .unwrap();
    assert_eq!(updated, 2);
    let again = client
        .execute(
            "UPDATE client_values SET name = $1 WHERE id <= $2",
            &["cy".into(), 1i64.into()],
        )
        .unwrap();
    assert_eq!(again, 1);
    client.batch_execute("DROP TABLE client_values").unwrap();
    client.close();
}

#[test]
fn a_failed_statement_names_its_sqlstate_and_leaves_the_connection_usable() {
    let Some(url) = url("errors") else { return };
    let mut client = connect(&url);
    client
        .batch_execute(
            "DROP TABLE IF EXISTS client_errors;
             CREATE TABLE client_errors (name TEXT PRIMARY KEY)",
        )
        .unwrap();
    let insert = "INSERT INTO client_errors (name) VALUES ($1)";
    client.execute(insert, &["ann".into()]).unwrap();
    let duplicate = client.execute(insert, &["ann".into()]).unwrap_err();
    assert_eq!(duplicate.code(), Some("23505"), "{duplicate}");
    assert!(
        duplicate.to_string().contains("client_errors_pkey"),
        "{duplicate}"
    );
    assert!(!client.is_broken());
    let syntax = client.query("SELEC 1", &[]).unwrap_err();
    assert_eq!(syntax.code(), Some("42601"), "{syntax}");
    let batch = client
        .batch_execute("SELECT 1; SELECT * FROM nowhere")
        .unwrap_err();
    assert_eq!(batch.code(), Some("42P01"), "{batch}");
    // Still usable, the statement that failed to parse included.
    client.execute(insert, &["bob".into()]).unwrap();
    assert_eq!(client.query("SELECT 1", &[]).unwrap()[0].i64(0).unwrap(), 1);
    client.batch_execute("DROP TABLE client_errors").unwrap();
}

#[test]
fn a_transaction_commits_whole_or_not_at_all() {
    let Some(url) = url("transaction") else {
        return;
    };
    let mut client = connect(&url);
    client
        .batch_execute(
            "DROP TABLE IF EXISTS client_tx;
             CREATE TABLE client_tx (n BIGINT PRIMARY KEY)",
        )
        .unwrap();
    let insert = "INSERT INTO client_tx (n) VALUES ($1)";
    client
        .transaction(|tx| {
            tx.execute(insert, &[1i64.into()])?;
            tx.execute(insert, &[2i64.into()])
        })
        .unwrap();
    let failed = client.transaction(|tx| {
        tx.execute(insert, &[3i64.into()])?;
        tx.execute(insert, &[1i64.into()])
    });
    assert_eq!(failed.unwrap_err().code(), Some("23505"));
    let rows = client
        .query("SELECT n FROM client_tx ORDER BY n", &[])
        .unwrap();
    let kept: Vec<i64> = rows.iter().map(|row| row.i64(0).unwrap()).collect();
    assert_eq!(kept, [1, 2]);
    client.batch_execute("DROP TABLE client_tx").unwrap();
}

#[test]
fn a_connection_the_server_ends_is_broken_and_says_so() {
    let Some(url) = url("broken") else { return };
    let mut victim = connect(&url);
    let pid = victim.query("SELECT pg_backend_pid()", &[]).unwrap()[0]
        .i64(0)
        .unwrap();
    let mut other = connect(&url);
    let ended = other
        .query("SELECT pg_terminate_backend($1::int)", &[pid.into()])
        .unwrap();
    assert_eq!(ended[0].str(0).unwrap(), "t");
    let err = victim.query("SELECT 1", &[]).unwrap_err();
    assert!(victim.is_broken(), "{err}");
    assert!(!other.is_broken());
}

#[test]
fn bad_credentials_and_unreachable_servers_are_told_apart() {
    let Some(url) = url("login") else { return };
    let mut config = Config::parse(&url).unwrap();
    config.password = Some("not the password".into());
    let refused = Client::connect(&config, TIMEOUT).err().unwrap();
    assert_eq!(refused.code(), Some("28P01"), "{refused}");
    assert!(
        refused
            .to_string()
            .contains("password authentication failed"),
        "{refused}"
    );
    config.password = None;
    let no_password = Client::connect(&config, TIMEOUT).err().unwrap();
    assert!(matches!(no_password, PgError::Auth(_)), "{no_password}");
    // A port nothing listens on: bind one, note it, free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut nowhere = Config::parse(&url).unwrap();
    nowhere.port = port;
    let unreachable = Client::connect(&nowhere, TIMEOUT).err().unwrap();
    assert!(
        matches!(unreachable, PgError::Unreachable(_)),
        "{unreachable}"
    );
    assert!(
        unreachable.to_string().contains(&port.to_string()),
        "{unreachable}"
    );
}

#[test]
fn each_sslmode_encrypts_and_checks_as_libpq_s_does() {
    let Some(url) = url("tls") else { return };
    let ca = std::env::var("WREN_TEST_DATABASE_CA").expect("WREN_TEST_DATABASE_CA beside the URL");
    let with = |mode: SslMode, root: Option<&str>| {
        let mut config = Config::parse(&url).unwrap();
        config.ssl_mode = mode;
        config.root_cert = root.map(Into::into);
        Client::connect(&config, TIMEOUT)
    };
    // disable: plain; prefer and a bare require: TLS, certificate unchecked.
    assert!(!server_sees_tls(&mut with(SslMode::Disable, None).unwrap()));
    assert!(server_sees_tls(&mut with(SslMode::Prefer, None).unwrap()));
    assert!(server_sees_tls(&mut with(SslMode::Require, None).unwrap()));
    // Checked against the server's own certificate: accepted at every level
    // (it names 127.0.0.1, the URL's host).
    for mode in [SslMode::Require, SslMode::VerifyCa, SslMode::VerifyFull] {
        let mut client = with(mode, Some(&ca)).unwrap();
        assert!(server_sees_tls(&mut client), "{mode:?}");
    }
    // Reached as "localhost", which the certificate does not name: the
    // authority still vouches for it, the name no longer matches.
    let by_name = |mode: SslMode| {
        let mut config = Config::parse(&url).unwrap();
        config.host = "localhost".into();
        config.ssl_mode = mode;
        config.root_cert = Some(ca.clone().into());
        Client::connect(&config, TIMEOUT)
    };
    assert!(server_sees_tls(&mut by_name(SslMode::VerifyCa).unwrap()));
    let misnamed = by_name(SslMode::VerifyFull).err().unwrap();
    assert!(matches!(misnamed, PgError::Tls(_)), "{misnamed}");
    // Against the web's authorities, the test authority's certificate is
    // refused.
    for mode in [SslMode::VerifyCa, SslMode::VerifyFull] {
        let refused = with(mode, None).err().unwrap();
        assert!(matches!(refused, PgError::Tls(_)), "{mode:?}: {refused}");
    }
    // The URL's own spelling reaches the same place.
    let mut client = connect(&format!("{url}?sslmode=verify-full&sslrootcert={ca}"));
    assert!(server_sees_tls(&mut client));
}

/// Work that panics on a pooled connection frees its place: the pool of
/// one serves the next work at once (it would wait, then fail, with the
/// place lost).
#[test]
fn a_panic_on_a_pooled_connection_frees_its_place() {
    let Some(url) = url("pool") else { return };
    let pool = wren::postgres::Pool::new(&Config::parse(&url).unwrap(), 1);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.with(|_| -> Result<(), PgError> { panic!("the work's own bug") })
    }));
    assert!(panicked.is_err());
    let started = std::time::Instant::now();
    let one = pool.with(|client| client.query("SELECT 1", &[])).unwrap();
    assert_eq!(one[0].i64(0).unwrap(), 1);
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// SQL that cannot be sent (a NUL in it) fails alone: nothing of it goes
/// out with the next query.
#[test]
fn sql_that_cannot_be_encoded_leaves_the_next_query_whole() {
    let Some(url) = url("unencodable") else {
        return;
    };
    let mut client = connect(&url);
    assert!(client.query("SELECT 1\0", &[]).is_err());
    assert!(client.batch_execute("SELECT 2\0").is_err());
    let one = client.query("SELECT 1", &[]).unwrap();
    assert_eq!(one[0].i64(0).unwrap(), 1);
}
