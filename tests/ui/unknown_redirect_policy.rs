integration_runtime::integration!("./specs/unknown_redirect_policy.toml");

fn main() {}
