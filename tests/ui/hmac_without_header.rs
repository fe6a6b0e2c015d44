integration_runtime::integration!("./specs/hmac_without_header.toml");

fn main() {}
