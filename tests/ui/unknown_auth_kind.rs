integration_runtime::integration!("./specs/unknown_auth_kind.toml");

fn main() {}
