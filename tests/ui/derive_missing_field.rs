#[derive(integration_runtime::IntegrationRequest)]
#[integration(spec = "./specs/derive_missing_field.toml", endpoint = "ping")]
struct Greeting {
    count: Option<i64>,
}

fn main() {}
