//! `MASKGATE_TEST_PG_URL` handling; its own test binary because it changes
//! the process environment that `PgCluster::shared` reads once.

use maskgate_testkit::{PgCluster, TestkitError, EXTERNAL_URL_ENV};

#[test]
fn shared_uses_the_external_server_from_the_environment() {
    let server = PgCluster::start().unwrap();
    std::env::set_var(EXTERNAL_URL_ENV, server.url());

    let shared = PgCluster::shared();
    assert!(shared.is_external());
    assert_eq!(shared.port(), server.port());
    assert_eq!(shared.password(), server.password());
    assert!(shared.data_dir().is_none());
    assert_eq!(
        shared.psql("SELECT inet_server_addr()::text").unwrap(),
        "127.0.0.1/32",
        "psql went over TCP with the password"
    );

    let mut external = PgCluster::external(&server.url()).unwrap();
    assert!(matches!(external.stop(), Err(TestkitError::External(_))));
    assert!(
        server.is_running(),
        "external stop must not touch the server"
    );
}
