integration_runtime::integration!("./specs/base_url_not_url.toml");

fn main() {}
