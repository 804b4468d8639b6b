//! The example deployment in `examples/` stays valid as the formats evolve.

use std::path::Path;

use maskgate_policy::Policy;

#[test]
fn the_example_configuration_and_policy_load_without_warnings() {
    std::env::set_var("MASKGATE_UPSTREAM_PASSWORD", "not used by this test");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let config = maskgate_proxy::Config::load(&dir.join("maskgate.toml")).unwrap();
    assert_eq!(config.policy.dir, dir.join("policy"));
    let loaded = Policy::load_dir(&config.policy.dir, config.policy.settings.clone())
        .unwrap_or_else(|e| panic!("the example policy is refused:\n{e}"));
    assert!(loaded.policy.account("clerk_hanoi_01").is_some());
    // Whether an example account has expired depends on today's date, not on the example.
    let warnings: Vec<String> = loaded
        .warnings
        .iter()
        .map(ToString::to_string)
        .filter(|w| !w.contains("expired on"))
        .collect();
    assert!(warnings.is_empty(), "{warnings:#?}");
}
