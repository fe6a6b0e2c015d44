integration_runtime::integration!("./specs/unknown_http_method.toml");

fn main() {}
