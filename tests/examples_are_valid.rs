//! The example configuration in `examples/` stays valid as the format evolves.

use std::path::Path;

#[test]
fn the_example_configuration_and_users_file_load() {
    std::env::set_var("MASKGATE_UPSTREAM_PASSWORD", "not used by this test");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let config = maskgate_proxy::Config::load(&dir.join("maskgate.toml")).unwrap();
    assert_eq!(config.users_file, dir.join("users.toml"));
    let users = maskgate_policy::UsersFile::load(&config.users_file).unwrap();
    assert!(users.get("clerk_hanoi_01").is_some());
}
