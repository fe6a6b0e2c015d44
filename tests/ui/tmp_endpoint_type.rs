integration_runtime::integration!("./specs/tmp_endpoint_type.toml");

fn main() {}
