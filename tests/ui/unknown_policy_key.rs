integration_runtime::integration!("./specs/unknown_policy_key.toml");

fn main() {}
