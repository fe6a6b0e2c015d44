#[derive(integration_runtime::IntegrationRequest)]
#[integration(spec = "./specs/derive_misspelt_field.toml", endpoint = "ping")]
struct Greeting {
    text: String,
    cuont: Option<i64>,
}

fn main() {}
