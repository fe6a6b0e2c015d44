#[derive(integration_runtime::IntegrationRequest)]
#[integration(spec = "./specs/derive_wrong_field_type.toml", endpoint = "ping")]
struct Greeting {
    text: i64,
    count: Option<i64>,
}

fn main() {}
