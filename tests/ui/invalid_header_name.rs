integration_runtime::integration!("./specs/invalid_header_name.toml");

fn main() {}
