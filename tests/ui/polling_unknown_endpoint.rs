integration_runtime::integration!("./specs/polling_unknown_endpoint.toml");

fn main() {}
