integration_runtime::integration!("./specs/status_state_typo.toml");

fn main() {}
