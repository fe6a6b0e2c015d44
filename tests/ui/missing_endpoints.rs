integration_runtime::integration!("./specs/missing_endpoints.toml");

fn main() {}
