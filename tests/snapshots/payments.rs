// @generated from specs/payments.toml by integration-spec; do not edit.
// Update with `UPDATE_SNAPSHOTS=1 cargo test -p integration-tests --test snapshots`.

/// The `Payments` integration, generated from its spec.
///
/// Card payments: create a payment intent, learn the outcome by webhook.
pub mod payments {
    #[allow(unused_imports)]
    use ::integration_runtime::__private as __rt;
    /// The `Address` entity of the spec.
    #[derive(Debug, Clone, PartialEq, __rt::Serialize, __rt::Deserialize)]
    #[serde(crate = "::integration_runtime::__private::serde")]
    pub struct Address {
        /// `line1` (string).
        pub line1: __rt::String,
        /// `city` (string).
        pub city: __rt::String,
        /// `postal_code` (string).
        pub postal_code: __rt::String,
        /// `country` (string).
        pub country: __rt::String,
    }
    impl Address {
        /// Checks every constraint the spec declares (lengths, ranges),
        /// including those of nested entities, and reports all violations.
        pub fn validate(&self) -> __rt::Result<(), __rt::ValidationError> {
            let mut violations = __rt::Violations::new();
            violations.len_in("country", self.country.chars().count(), 2..=2);
            violations.finish()
        }
    }
    __rt::impl_entity!(Address);
    /// The `Customer` entity of the spec.
    #[derive(Debug, Clone, PartialEq, __rt::Serialize, __rt::Deserialize)]
    #[serde(crate = "::integration_runtime::__private::serde")]
    pub struct Customer {
        /// `email` (string).
        pub email: __rt::String,
        /// `name` (string).
        #[serde(default, skip_serializing_if = "::std::option::Option::is_none")]
        pub name: __rt::Option<__rt::String>,
        /// `address` (Address).
        #[serde(default, skip_serializing_if = "::std::option::Option::is_none")]
        pub address: __rt::Option<Address>,
    }
    impl Customer {
        /// Checks every constraint the spec declares (lengths, ranges),
        /// including those of nested entities, and reports all violations.
        pub fn validate(&self) -> __rt::Result<(), __rt::ValidationError> {
            let mut violations = __rt::Violations::new();
            if let __rt::Some(value) = &self.address {
                violations.nested("address", value.validate());
            }
            violations.finish()
        }
    }
    __rt::impl_entity!(Customer);
    /// The `PaymentIntent` entity of the spec.
    #[derive(Debug, Clone, PartialEq, __rt::Serialize, __rt::Deserialize)]
    #[serde(crate = "::integration_runtime::__private::serde")]
    pub struct PaymentIntent {
        /// Amount in the smallest currency unit.
        pub amount: i64,
        /// `currency` (enum).
        pub currency: PaymentIntentCurrency,
        /// `customer` (Customer).
        pub customer: Customer,
        /// `capture` (enum).
        #[serde(default = "__default_payment_intent_capture")]
        pub capture: PaymentIntentCapture,
        /// `order_id` (string).
        pub order_id: __rt::String,
        /// `tags` (list of string).
        #[serde(default, skip_serializing_if = "::std::option::Option::is_none")]
        pub tags: __rt::Option<__rt::Vec<__rt::String>>,
    }
    impl PaymentIntent {
        /// Checks every constraint the spec declares (lengths, ranges),
        /// including those of nested entities, and reports all violations.
        pub fn validate(&self) -> __rt::Result<(), __rt::ValidationError> {
            let mut violations = __rt::Violations::new();
            violations.int_in("amount", self.amount, 1..);
            violations.nested("customer", self.customer.validate());
            if let __rt::Some(value) = &self.tags {
                violations.len_in("tags", value.len(), ..=10);
            }
            violations.finish()
        }
    }
    __rt::impl_entity!(PaymentIntent);
    /// Allowed values of `PaymentIntent.currency`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[derive(__rt::Serialize, __rt::Deserialize)]
    #[serde(crate = "::integration_runtime::__private::serde")]
    pub enum PaymentIntentCurrency {
        /// `usd`
        #[serde(rename = "usd")]
        Usd,
        /// `eur`
        #[serde(rename = "eur")]
        Eur,
        /// `gbp`
        #[serde(rename = "gbp")]
        Gbp,
    }
    impl PaymentIntentCurrency {
        /// The value as the spec spells it.
        pub fn as_str(&self) -> &'static str {
            match self {
                PaymentIntentCurrency::Usd => "usd",
                PaymentIntentCurrency::Eur => "eur",
                PaymentIntentCurrency::Gbp => "gbp",
            }
        }
    }
    /// Allowed values of `PaymentIntent.capture`.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    #[derive(__rt::Serialize, __rt::Deserialize)]
    #[serde(crate = "::integration_runtime::__private::serde")]
    pub enum PaymentIntentCapture {
        /// `automatic`
        #[serde(rename = "automatic")]
        Automatic,
        /// `manual`
        #[serde(rename = "manual")]
        Manual,
    }
    impl PaymentIntentCapture {
        /// The value as the spec spells it.
        pub fn as_str(&self) -> &'static str {
            match self {
                PaymentIntentCapture::Automatic => "automatic",
                PaymentIntentCapture::Manual => "manual",
            }
        }
    }
    fn __default_payment_intent_capture() -> PaymentIntentCapture {
        PaymentIntentCapture::Automatic
    }
    /// The `Charge` entity of the spec.
    #[derive(Debug, Clone, PartialEq, __rt::Serialize, __rt::Deserialize)]
    #[serde(crate = "::integration_runtime::__private::serde")]
    pub struct Charge {
        /// `id` (string).
        pub id: __rt::String,
        /// `amount_received` (int).
        pub amount_received: i64,
        /// `paid_at` (timestamp).
        #[serde(default, skip_serializing_if = "::std::option::Option::is_none")]
        pub paid_at: __rt::Option<__rt::chrono::DateTime<__rt::chrono::Utc>>,
    }
    __rt::impl_entity!(Charge, unconstrained);
    /// Where a `Payments` call is in its lifecycle.
    pub type PaymentsStatus = __rt::CallStatus;
    /// The typed request parameters of a `Payments` call, one variant per endpoint that starts calls.
    #[derive(Debug, Clone, PartialEq, __rt::Serialize, __rt::Deserialize)]
    #[serde(
        crate = "::integration_runtime::__private::serde",
        tag = "endpoint",
        content = "params"
    )]
    pub enum PaymentsRequest {
        /// Parameters of `create_payment` (POST /v1/payment_intents).
        #[serde(rename = "create_payment")]
        CreatePayment(PaymentIntent),
    }
    impl __rt::CallRequest for PaymentsRequest {
        const DESCRIPTOR: &'static __rt::IntegrationDescriptor = &__DESCRIPTOR;
    }
    impl __rt::IntoCall for PaymentsRequest {
        const INTEGRATION: &'static str = "Payments";
        fn endpoint(&self) -> &'static str {
            match *self {
                PaymentsRequest::CreatePayment(_) => "create_payment",
            }
        }
        fn into_params(self) -> __rt::serde_json::Value {
            match self {
                PaymentsRequest::CreatePayment(params) => __rt::to_value(&params),
            }
        }
    }
    impl __rt::From<PaymentIntent> for PaymentsRequest {
        fn from(params: PaymentIntent) -> Self {
            PaymentsRequest::CreatePayment(params)
        }
    }
    impl __rt::IntoCall for PaymentIntent {
        const INTEGRATION: &'static str = "Payments";
        fn endpoint(&self) -> &'static str {
            "create_payment"
        }
        fn into_params(self) -> __rt::serde_json::Value {
            __rt::to_value(&self)
        }
    }
    /// The typed response data of a finished `Payments` call.
    #[derive(Debug, Clone, PartialEq, __rt::Serialize)]
    #[serde(crate = "::integration_runtime::__private::serde", untagged)]
    pub enum PaymentsResponse {
        /// Result of a `create_payment` call.
        CreatePayment(Charge),
    }
    impl __rt::CallResponse for PaymentsResponse {
        fn from_result(
            endpoint: &str,
            value: &__rt::serde_json::Value,
        ) -> __rt::Result<Self, __rt::ClientError> {
            match endpoint {
                "create_payment" => {
                    __rt::read_stored(endpoint, value, "stored response data")
                        .map(PaymentsResponse::CreatePayment)
                }
                _ => __rt::Err(__rt::unknown_endpoint("Payments", endpoint)),
            }
        }
    }
    /// One call to `Payments`: the record business code creates and the runtime drives to a terminal state.
    pub type PaymentsCall = __rt::Call<PaymentsRequest, PaymentsResponse>;
    /// A lifecycle event of a `Payments` call: `initialized -> processing -> completed | failed`.
    pub type PaymentsEvent = __rt::Event<PaymentsResponse>;
    /// Settings of the `Payments` integration. Secrets are redacted in `Debug` output.
    #[derive(Debug, Clone)]
    pub struct PaymentsConfig {
        /// Where requests go.
        pub base_url: __rt::String,
        /// secret API key (sk_live_... or sk_test_...) (from `PAYMENTS_SECRET_KEY`).
        pub token: __rt::Secret,
        /// webhook endpoint signing secret (whsec_...) (from `PAYMENTS_WEBHOOK_SECRET`).
        pub webhook_secret: __rt::Secret,
    }
    impl PaymentsConfig {
        /// Reads every setting from the environment, and reports every
        /// missing variable (with what it is for) in one error.
        pub fn from_env() -> __rt::Result<Self, __rt::ConfigError> {
            let mut env = __rt::EnvReader::new("Payments");
            let base_url = env
                .value_or("PAYMENTS_BASE_URL", "https://payments.example.com");
            let token = env
                .secret(
                    "PAYMENTS_SECRET_KEY",
                    "secret API key (sk_live_... or sk_test_...)",
                );
            let webhook_secret = env
                .secret(
                    "PAYMENTS_WEBHOOK_SECRET",
                    "webhook endpoint signing secret (whsec_...)",
                );
            env.finish()?;
            __rt::Ok(PaymentsConfig {
                base_url,
                token,
                webhook_secret,
            })
        }
    }
    /// A typed HTTP client of `Payments`: one method per endpoint.
    #[derive(Debug, Clone)]
    pub struct PaymentsClient {
        http: __rt::HttpClient,
    }
    impl PaymentsClient {
        /// A client for the given settings.
        pub fn new(config: &PaymentsConfig) -> __rt::Result<Self, __rt::ConfigError> {
            let http = __rt::HttpClient::for_integration(
                &__DESCRIPTOR,
                &config.base_url,
                __rt::Auth::Bearer(config.token.clone()),
            )?;
            __rt::Ok(PaymentsClient { http })
        }
        /// This client, sending through `client`; see
        /// [`Payments::with_reqwest_client`]: the spec's policies apply on top.
        #[must_use]
        pub fn with_reqwest_client(self, client: __rt::reqwest::Client) -> Self {
            PaymentsClient {
                http: self.http.with_reqwest_client(client),
            }
        }
        /// `POST /v1/payment_intents` (async: the call finishes later).
        pub async fn create_payment(
            &self,
            request: &PaymentIntent,
            options: &__rt::CallOptions,
        ) -> __rt::Result<__rt::Reply<Charge>, __rt::ClientError> {
            __rt::send(&self.http, &__ENDPOINT_CREATE_PAYMENT, request, options).await
        }
        /// `GET /v1/payment_intents/{external_id}`.
        pub async fn retrieve_payment(
            &self,
            external_id: &str,
        ) -> __rt::Result<__rt::Reply<Charge>, __rt::ClientError> {
            __rt::exchange(
                    &self.http,
                    &__ENDPOINT_RETRIEVE_PAYMENT,
                    __rt::Input::external_id(external_id),
                )
                .await
        }
    }
    static __ENDPOINT_CREATE_PAYMENT: __rt::Exchange = __rt::Exchange {
        request: __rt::RequestSpec {
            endpoint: &__DESCRIPTOR.endpoints[0usize],
            path: &[__rt::PathPart::Literal("/v1/payment_intents")],
            query: &[],
            headers: &[],
            body: &[
                (&["amount"], __rt::Source::Field("amount")),
                (&["currency"], __rt::Source::Field("currency")),
                (&["customer"], __rt::Source::Field("customer")),
                (
                    &["capture_method"],
                    __rt::Source::ValueMap {
                        field: "capture",
                        map: &[
                            ("automatic", __rt::Constant::String("automatic")),
                            ("manual", __rt::Constant::String("manual")),
                        ],
                    },
                ),
                (&["metadata", "order_id"], __rt::Source::Field("order_id")),
                (&["metadata", "tags"], __rt::Source::Field("tags")),
                (
                    &["description"],
                    __rt::Source::Template(
                        &[__rt::Piece::Literal("Order "), __rt::Piece::Field("order_id")],
                    ),
                ),
            ],
            encoding: __rt::BodyEncoding::Form,
            error: __rt::Some(&[__rt::Key("error"), __rt::Key("message")]),
        },
        reply: __rt::ReplySpec {
            endpoint: "create_payment",
            status: __rt::Some(__rt::StatusSpec {
                path: &[__rt::Key("status")],
                map: &[
                    ("requires_action", __rt::RemoteStatus::Processing),
                    ("processing", __rt::RemoteStatus::Processing),
                    ("succeeded", __rt::RemoteStatus::Completed),
                    ("canceled", __rt::RemoteStatus::Failed),
                ],
            }),
            external_id: __rt::ExternalIdSpec::Required(&[__rt::Key("id")]),
            result: __rt::Some(
                &[
                    ("id", &[__rt::Key("latest_charge"), __rt::Key("id")]),
                    ("amount_received", &[__rt::Key("amount_received")]),
                    ("paid_at", &[__rt::Key("latest_charge"), __rt::Key("created_at")]),
                ],
            ),
            error: __rt::Some(&[__rt::Key("error"), __rt::Key("message")]),
        },
    };
    static __ENDPOINT_RETRIEVE_PAYMENT: __rt::Exchange = __rt::Exchange {
        request: __rt::RequestSpec {
            endpoint: &__DESCRIPTOR.endpoints[1usize],
            path: &[
                __rt::PathPart::Literal("/v1/payment_intents/"),
                __rt::PathPart::ExternalId,
            ],
            query: &[],
            headers: &[],
            body: &[],
            encoding: __rt::BodyEncoding::Json,
            error: __rt::Some(&[__rt::Key("last_payment_error"), __rt::Key("message")]),
        },
        reply: __rt::ReplySpec {
            endpoint: "retrieve_payment",
            status: __rt::Some(__rt::StatusSpec {
                path: &[__rt::Key("status")],
                map: &[
                    ("requires_action", __rt::RemoteStatus::Processing),
                    ("processing", __rt::RemoteStatus::Processing),
                    ("succeeded", __rt::RemoteStatus::Completed),
                    ("canceled", __rt::RemoteStatus::Failed),
                ],
            }),
            external_id: __rt::ExternalIdSpec::Generated,
            result: __rt::Some(
                &[
                    ("id", &[__rt::Key("latest_charge"), __rt::Key("id")]),
                    ("amount_received", &[__rt::Key("amount_received")]),
                    ("paid_at", &[__rt::Key("latest_charge"), __rt::Key("created_at")]),
                ],
            ),
            error: __rt::Some(&[__rt::Key("last_payment_error"), __rt::Key("message")]),
        },
    };
    /// The `Payments` integration, ready to register with the runtime.
    #[derive(Debug, Clone)]
    pub struct Payments {
        config: PaymentsConfig,
        client: PaymentsClient,
    }
    impl Payments {
        /// The integration with the given settings.
        pub fn new(config: PaymentsConfig) -> __rt::Result<Self, __rt::ConfigError> {
            let client = PaymentsClient::new(&config)?;
            __rt::Ok(Payments { config, client })
        }
        /// The integration configured from the environment; every missing
        /// variable is reported at once, with what it is for.
        pub fn from_env() -> __rt::Result<Self, __rt::ConfigError> {
            Self::new(PaymentsConfig::from_env()?)
        }
        /// The integration, sending through `client`, a `reqwest::Client` you
        /// configured (proxies, root certificates, default headers); the spec's
        /// timeouts, size limits, auth and redirect rules still apply on top.
        /// Build it with `redirect(reqwest::redirect::Policy::none())`: a client
        /// that follows redirects itself bypasses the spec's redirect rules (the
        /// request then fails, but has been sent on). Its own connect timeout
        /// applies instead of the spec's.
        ///
        /// `Payments::from_env()?.with_reqwest_client(client)`
        #[must_use]
        pub fn with_reqwest_client(mut self, client: __rt::reqwest::Client) -> Self {
            self.client = self.client.with_reqwest_client(client);
            self
        }
        /// The typed client, for direct calls.
        pub fn client(&self) -> &PaymentsClient {
            &self.client
        }
        /// The settings.
        pub fn config(&self) -> &PaymentsConfig {
            &self.config
        }
        /// Static facts about the integration: endpoints, policies, polling, webhook.
        pub fn descriptor() -> &'static __rt::IntegrationDescriptor {
            &__DESCRIPTOR
        }
    }
    impl __rt::Generated for Payments {
        const GLUE: &'static __rt::Glue = &__rt::Glue {
            descriptor: &__DESCRIPTOR,
            calls: &[
                __rt::CallGlue::new::<PaymentIntent, Charge>(&__ENDPOINT_CREATE_PAYMENT),
            ],
            poll: __rt::Some(
                __rt::PollGlue::new::<Charge>(&__ENDPOINT_RETRIEVE_PAYMENT),
            ),
            webhook: __rt::Some(__rt::WebhookGlue::new::<Charge>(&__WEBHOOK_REPLY)),
        };
        fn http(&self) -> &__rt::HttpClient {
            &self.client.http
        }
        fn webhook_secret(&self) -> __rt::Option<__rt::Secret> {
            __rt::Some(self.config.webhook_secret.clone())
        }
    }
    static __WEBHOOK_REPLY: __rt::ReplySpec = __rt::ReplySpec {
        endpoint: "webhook",
        status: __rt::Some(__rt::StatusSpec {
            path: &[__rt::Key("type")],
            map: &[
                ("payment_intent.processing", __rt::RemoteStatus::Processing),
                ("payment_intent.succeeded", __rt::RemoteStatus::Completed),
                ("payment_intent.payment_failed", __rt::RemoteStatus::Failed),
                ("payment_intent.canceled", __rt::RemoteStatus::Failed),
            ],
        }),
        external_id: __rt::ExternalIdSpec::Optional(
            &[__rt::Key("data"), __rt::Key("object"), __rt::Key("id")],
        ),
        result: __rt::Some(
            &[
                (
                    "id",
                    &[
                        __rt::Key("data"),
                        __rt::Key("object"),
                        __rt::Key("latest_charge"),
                        __rt::Key("id"),
                    ],
                ),
                (
                    "amount_received",
                    &[
                        __rt::Key("data"),
                        __rt::Key("object"),
                        __rt::Key("amount_received"),
                    ],
                ),
                (
                    "paid_at",
                    &[
                        __rt::Key("data"),
                        __rt::Key("object"),
                        __rt::Key("latest_charge"),
                        __rt::Key("created_at"),
                    ],
                ),
            ],
        ),
        error: __rt::Some(
            &[
                __rt::Key("data"),
                __rt::Key("object"),
                __rt::Key("last_payment_error"),
                __rt::Key("message"),
            ],
        ),
    };
    const __POLICY: __rt::PolicyDescriptor = __rt::PolicyDescriptor {
        timeout_ms: 20000u64,
        retry: __rt::RetryPolicy {
            max_attempts: 4u32,
            initial_backoff_ms: 500u64,
            max_backoff_ms: 30000u64,
            ..__rt::RetryPolicy::SPEC_DEFAULT
        },
        circuit_breaker: __rt::Some(__rt::CircuitBreakerPolicy {
            failure_threshold: 10u32,
            open_for_ms: 60000u64,
            half_open_probes: 2u32,
            scope: __rt::PolicyScope::Integration,
        }),
        rate_limit: __rt::Some(__rt::RateLimitPolicy {
            per_second: 25f64,
            burst: 25u32,
            scope: __rt::PolicyScope::Integration,
        }),
        ..__rt::PolicyDescriptor::DEFAULT
    };
    #[doc(hidden)]
    pub static __DESCRIPTOR: __rt::IntegrationDescriptor = __rt::IntegrationDescriptor {
        name: "Payments",
        module: "payments",
        endpoints: &[
            __rt::EndpointDescriptor {
                mode: __rt::Mode::Async,
                starts_calls: true,
                idempotent: false,
                idempotency_key: __rt::Some(
                    __rt::IdempotencyKeyPlacement::Header("Idempotency-Key"),
                ),
                request_fields: __rt::RequestFields {
                    all: &[
                        "amount",
                        "currency",
                        "customer",
                        "capture",
                        "order_id",
                        "tags",
                    ],
                    path: &[],
                    headers: &[],
                },
                give_up_after_s: __rt::Some(86400u64),
                ..__rt::EndpointDescriptor::new(
                    "create_payment",
                    "POST",
                    "/v1/payment_intents",
                    __POLICY,
                )
            },
            __rt::EndpointDescriptor::new(
                "retrieve_payment",
                "GET",
                "/v1/payment_intents/{external_id}",
                __POLICY,
            ),
        ],
        policy: __POLICY,
        polling: __rt::Some(__rt::PollingDescriptor {
            endpoint: "retrieve_payment",
            interval_ms: 5000u64,
            backoff: 2f64,
            max_interval_ms: 300000u64,
            give_up_after_s: 86400u64,
        }),
        webhook: __rt::Some(__rt::WebhookDescriptor {
            path: "/webhooks/payments",
            scheme: __rt::SignatureScheme::Stripe,
            secret_env: "PAYMENTS_WEBHOOK_SECRET",
            tolerance_s: 300u64,
            max_body_bytes: 1048576usize,
        }),
        fingerprint: "fnv1a64:20d94ba0b65edf95",
    };
}
