integration_runtime::integration!("./specs/oauth2_authorization_code_without_authorization_url.toml");

fn main() {}
