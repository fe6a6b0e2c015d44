// @generated from specs/payments.toml by integration-spec; do not edit.
// Update with `UPDATE_SNAPSHOTS=1 cargo test -p integration-tests --test snapshots`.

/// The `Payments` integration, generated from its spec.
///
/// Card payments: create a payment intent, learn the outcome by webhook.
pub mod payments {
    #[allow(unused_imports)]
    use ::integration_runtime::__private as __rt;
    /// The `Address` entity of the spec.
    #[derive(Debug, Clone, PartialEq, __rt::serde::Serialize, __rt::serde::Deserialize)]
    #[serde(crate = "::integration_runtime::__private::serde")]
    pub struct Address {
        /// `line1` (string).
        pub line1: ::std::string::String,
        /// `city` (string).
        pub city: ::std::string::String,
        /// `postal_code` (string).
        pub postal_code: ::std::string::String,
        /// `country` (string).
        pub country: ::std::string::String,
    }
    impl Address {
        /// Checks every constraint the spec declares (lengths, ranges),
        /// including those of nested entities, and reports all violations.
        pub fn validate(
            &self,
        ) -> ::std::result::Result<(), ::integration_runtime::ValidationError> {
            #[allow(unused_mut)]
            let mut violations = __rt::Violations::new();
            {
                let value = &self.country;
                violations
                    .len_between(
                        "country",
                        value.chars().count(),
                        ::std::option::Option::Some(2u64),
                        ::std::option::Option::Some(2u64),
                    );
            }
            violations.finish()
        }
    }
    impl ::integration_runtime::FromResult for Address {
        fn from_result(
            value: &__rt::serde_json::Value,
        ) -> ::std::result::Result<Self, __rt::serde_json::Error> {
            <Self as __rt::serde::Deserialize>::deserialize(value)
        }
    }
    /// The `Customer` entity of the spec.
    #[derive(Debug, Clone, PartialEq, __rt::serde::Serialize, __rt::serde::Deserialize)]
    #[serde(crate = "::integration_runtime::__private::serde")]
    pub struct Customer {
        /// `email` (string).
        pub email: ::std::string::String,
        /// `name` (string).
        #[serde(default, skip_serializing_if = "::std::option::Option::is_none")]
        pub name: ::std::option::Option<::std::string::String>,
        /// `address` (Address).
        #[serde(default, skip_serializing_if = "::std::option::Option::is_none")]
        pub address: ::std::option::Option<Address>,
    }
    impl Customer {
        /// Checks every constraint the spec declares (lengths, ranges),
        /// including those of nested entities, and reports all violations.
        pub fn validate(
            &self,
        ) -> ::std::result::Result<(), ::integration_runtime::ValidationError> {
            #[allow(unused_mut)]
            let mut violations = __rt::Violations::new();
            if let ::std::option::Option::Some(value) = &self.address {
                violations.nested("address", value.validate());
            }
            violations.finish()
        }
    }
    impl ::integration_runtime::FromResult for Customer {
        fn from_result(
            value: &__rt::serde_json::Value,
        ) -> ::std::result::Result<Self, __rt::serde_json::Error> {
            <Self as __rt::serde::Deserialize>::deserialize(value)
        }
    }
    /// The `PaymentIntent` entity of the spec.
    #[derive(Debug, Clone, PartialEq, __rt::serde::Serialize, __rt::serde::Deserialize)]
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
        pub order_id: ::std::string::String,
        /// `tags` (list of string).
        #[serde(default, skip_serializing_if = "::std::option::Option::is_none")]
        pub tags: ::std::option::Option<::std::vec::Vec<::std::string::String>>,
    }
    impl PaymentIntent {
        /// Checks every constraint the spec declares (lengths, ranges),
        /// including those of nested entities, and reports all violations.
        pub fn validate(
            &self,
        ) -> ::std::result::Result<(), ::integration_runtime::ValidationError> {
            #[allow(unused_mut)]
            let mut violations = __rt::Violations::new();
            {
                let value = &self.amount;
                violations
                    .int_between(
                        "amount",
                        *value,
                        ::std::option::Option::Some(1i64),
                        ::std::option::Option::None,
                    );
            }
            {
                let value = &self.customer;
                violations.nested("customer", value.validate());
            }
            if let ::std::option::Option::Some(value) = &self.tags {
                violations
                    .len_between(
                        "tags",
                        value.len(),
                        ::std::option::Option::None,
                        ::std::option::Option::Some(10u64),
                    );
            }
            violations.finish()
        }
    }
    impl ::integration_runtime::FromResult for PaymentIntent {
        fn from_result(
            value: &__rt::serde_json::Value,
        ) -> ::std::result::Result<Self, __rt::serde_json::Error> {
            <Self as __rt::serde::Deserialize>::deserialize(value)
        }
    }
    /// Allowed values of `PaymentIntent.currency`.
    #[derive(
        Debug,
        Clone,
        Copy,
        PartialEq,
        Eq,
        Hash,
        __rt::serde::Serialize,
        __rt::serde::Deserialize
    )]
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
    #[derive(
        Debug,
        Clone,
        Copy,
        PartialEq,
        Eq,
        Hash,
        __rt::serde::Serialize,
        __rt::serde::Deserialize
    )]
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
    #[doc(hidden)]
    fn __default_payment_intent_capture() -> PaymentIntentCapture {
        PaymentIntentCapture::Automatic
    }
    /// The `Charge` entity of the spec.
    #[derive(Debug, Clone, PartialEq, __rt::serde::Serialize, __rt::serde::Deserialize)]
    #[serde(crate = "::integration_runtime::__private::serde")]
    pub struct Charge {
        /// `id` (string).
        pub id: ::std::string::String,
        /// `amount_received` (int).
        pub amount_received: i64,
        /// `paid_at` (timestamp).
        #[serde(default, skip_serializing_if = "::std::option::Option::is_none")]
        pub paid_at: ::std::option::Option<
            ::integration_runtime::__private::chrono::DateTime<
                ::integration_runtime::__private::chrono::Utc,
            >,
        >,
    }
    impl Charge {
        /// Checks every constraint the spec declares (lengths, ranges),
        /// including those of nested entities, and reports all violations.
        pub fn validate(
            &self,
        ) -> ::std::result::Result<(), ::integration_runtime::ValidationError> {
            #[allow(unused_mut)]
            let mut violations = __rt::Violations::new();
            violations.finish()
        }
    }
    impl ::integration_runtime::FromResult for Charge {
        fn from_result(
            value: &__rt::serde_json::Value,
        ) -> ::std::result::Result<Self, __rt::serde_json::Error> {
            <Self as __rt::serde::Deserialize>::deserialize(value)
        }
    }
    /// Where a `Payments` call is in its lifecycle.
    pub type PaymentsStatus = ::integration_runtime::CallStatus;
    /// The typed request parameters of a `Payments` call, one variant per endpoint that starts calls.
    #[derive(Debug, Clone, PartialEq, __rt::serde::Serialize, __rt::serde::Deserialize)]
    #[serde(
        crate = "::integration_runtime::__private::serde",
        tag = "endpoint",
        content = "params",
        rename_all = "snake_case"
    )]
    pub enum PaymentsRequest {
        /// Parameters of `create_payment` (POST /v1/payment_intents).
        CreatePayment(PaymentIntent),
    }
    impl ::integration_runtime::CallRequest for PaymentsRequest {
        fn from_params(
            endpoint: &str,
            params: &__rt::serde_json::Value,
        ) -> ::std::result::Result<Self, ::integration_runtime::ClientError> {
            let parsed: ::std::result::Result<Self, __rt::serde_json::Error> = match endpoint {
                "create_payment" => {
                    __rt::serde_json::from_value(params.clone())
                        .map(PaymentsRequest::CreatePayment)
                }
                _ => {
                    return ::std::result::Result::Err(
                        __rt::unknown_endpoint("Payments", endpoint),
                    );
                }
            };
            parsed
                .map_err(|e| __rt::decode_error(
                    endpoint,
                    ::std::format!("stored request parameters do not fit the spec: {e}"),
                ))
        }
    }
    impl ::integration_runtime::IntoCall for PaymentsRequest {
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
    impl ::std::convert::From<PaymentIntent> for PaymentsRequest {
        fn from(params: PaymentIntent) -> Self {
            PaymentsRequest::CreatePayment(params)
        }
    }
    impl ::integration_runtime::IntoCall for PaymentIntent {
        const INTEGRATION: &'static str = "Payments";
        fn endpoint(&self) -> &'static str {
            "create_payment"
        }
        fn into_params(self) -> __rt::serde_json::Value {
            __rt::to_value(&self)
        }
    }
    /// The typed response data of a finished `Payments` call.
    #[derive(Debug, Clone, PartialEq, __rt::serde::Serialize)]
    #[serde(crate = "::integration_runtime::__private::serde", untagged)]
    pub enum PaymentsResponse {
        /// Result of a `create_payment` call.
        CreatePayment(Charge),
    }
    impl ::integration_runtime::CallResponse for PaymentsResponse {
        fn from_result(
            endpoint: &str,
            value: &__rt::serde_json::Value,
        ) -> ::std::result::Result<Self, ::integration_runtime::ClientError> {
            let parsed: ::std::result::Result<Self, __rt::serde_json::Error> = match endpoint {
                "create_payment" => {
                    __rt::serde_json::from_value(value.clone())
                        .map(PaymentsResponse::CreatePayment)
                }
                _ => {
                    return ::std::result::Result::Err(
                        __rt::unknown_endpoint("Payments", endpoint),
                    );
                }
            };
            parsed
                .map_err(|e| __rt::decode_error(
                    endpoint,
                    ::std::format!("stored response data do not fit the spec: {e}"),
                ))
        }
    }
    /// One call to `Payments`: the record business code creates and the runtime drives to a terminal state.
    pub type PaymentsCall = ::integration_runtime::Call<
        PaymentsRequest,
        PaymentsResponse,
    >;
    /// A lifecycle event of a `Payments` call: `initialized -> processing -> completed | failed`.
    pub type PaymentsEvent = ::integration_runtime::Event<PaymentsResponse>;
    /// Settings of the `Payments` integration. Secrets are redacted in `Debug` output.
    #[derive(Debug, Clone)]
    pub struct PaymentsConfig {
        /// Where requests go.
        pub base_url: ::std::string::String,
        /// secret API key (sk_live_... or sk_test_...) (from `PAYMENTS_SECRET_KEY`).
        pub token: ::integration_runtime::Secret,
        /// webhook endpoint signing secret (whsec_...) (from `PAYMENTS_WEBHOOK_SECRET`).
        pub webhook_secret: ::integration_runtime::Secret,
    }
    impl PaymentsConfig {
        /// Reads every setting from the environment, and reports every
        /// missing variable (with what it is for) in one error.
        pub fn from_env() -> ::std::result::Result<
            Self,
            ::integration_runtime::ConfigError,
        > {
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
            ::std::result::Result::Ok(PaymentsConfig {
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
        pub fn new(
            config: &PaymentsConfig,
        ) -> ::std::result::Result<Self, ::integration_runtime::ConfigError> {
            let http = __rt::HttpClient::for_integration(
                &__DESCRIPTOR,
                &config.base_url,
                __rt::Auth::Bearer(config.token.clone()),
            )?;
            ::std::result::Result::Ok(PaymentsClient { http })
        }
        /// This client, sending through `client` (proxies, root certificates,
        /// default headers) with the spec's policies on top. Build it with
        /// `redirect(reqwest::redirect::Policy::none())`: the spec's redirect
        /// rules hold only for redirects the runtime sees. Its own connect
        /// timeout applies instead of the spec's.
        #[must_use]
        pub fn with_reqwest_client(
            self,
            client: ::integration_runtime::reqwest::Client,
        ) -> Self {
            PaymentsClient {
                http: self.http.with_reqwest_client(client),
            }
        }
        /// `POST /v1/payment_intents` (async: the call finishes later).
        pub async fn create_payment(
            &self,
            request: &PaymentIntent,
            options: &::integration_runtime::CallOptions,
        ) -> ::std::result::Result<
            ::integration_runtime::Reply<Charge>,
            ::integration_runtime::ClientError,
        > {
            request.validate().map_err(|e| __rt::invalid_request("create_payment", e))?;
            let mut path = __rt::PathBuilder::new();
            path.literal("/v1/payment_intents");
            #[allow(unused_mut, clippy::vec_init_then_push)]
            let mut query: ::std::vec::Vec<(&'static str, __rt::serde_json::Value)> = ::std::vec::Vec::new();
            #[allow(unused_mut, clippy::vec_init_then_push)]
            let mut headers: ::std::vec::Vec<(&'static str, ::std::string::String)> = ::std::vec::Vec::new();
            let mut body = __rt::JsonBody::new();
            let value = __rt::to_value(&request.amount);
            if !value.is_null() {
                body.set(&["amount"], value);
            }
            let value = __rt::to_value(&request.currency);
            if !value.is_null() {
                body.set(&["currency"], value);
            }
            let value = __rt::to_value(&request.customer);
            if !value.is_null() {
                body.set(&["customer"], value);
            }
            let value = {
                let value = __rt::to_value(&request.capture);
                if value.is_null() {
                    __rt::serde_json::Value::Null
                } else {
                    match __rt::display_value(&value).as_str() {
                        "automatic" => __rt::serde_json::Value::from("automatic"),
                        "manual" => __rt::serde_json::Value::from("manual"),
                        _ => __rt::serde_json::Value::Null,
                    }
                }
            };
            if !value.is_null() {
                body.set(&["capture_method"], value);
            }
            let value = __rt::to_value(&request.order_id);
            if !value.is_null() {
                body.set(&["metadata", "order_id"], value);
            }
            let value = __rt::to_value(&request.tags);
            if !value.is_null() {
                body.set(&["metadata", "tags"], value);
            }
            let value = {
                let values = [__rt::to_value(&request.order_id)];
                if values.iter().any(|v| v.is_null()) {
                    __rt::serde_json::Value::Null
                } else {
                    __rt::serde_json::Value::String(
                        ::std::format!("Order {}", __rt::display_value(& values[0])),
                    )
                }
            };
            if !value.is_null() {
                body.set(&["description"], value);
            }
            if let ::std::option::Option::Some(key) = &options.idempotency_key {
                headers.push(("Idempotency-Key", key.clone()));
            }
            let response = self
                .http
                .send(__rt::HttpRequest {
                    endpoint: "create_payment",
                    method: "POST",
                    path: path.finish(),
                    query,
                    headers,
                    body: ::std::option::Option::Some((
                        __rt::BodyEncoding::Form,
                        body.into_value(),
                    )),
                    error_path: ::std::option::Option::Some(
                        &[__rt::Seg::Key("error"), __rt::Seg::Key("message")],
                    ),
                    policy: &__DESCRIPTOR.endpoints[0usize].policy,
                })
                .await?;
            let body = &response.body;
            ::std::result::Result::Ok({
                let status = ::std::option::Option::Some(
                    __rt::map_status(
                        "create_payment",
                        body,
                        &[__rt::Seg::Key("status")],
                        "$.status",
                        &[
                            (
                                "requires_action",
                                ::integration_runtime::RemoteStatus::Processing,
                            ),
                            (
                                "processing",
                                ::integration_runtime::RemoteStatus::Processing,
                            ),
                            (
                                "succeeded",
                                ::integration_runtime::RemoteStatus::Completed,
                            ),
                            ("canceled", ::integration_runtime::RemoteStatus::Failed),
                        ],
                    )?,
                );
                let external_id = match status {
                    ::std::option::Option::Some(
                        ::integration_runtime::RemoteStatus::Failed,
                    ) => __rt::extract_id(body, &[__rt::Seg::Key("id")]),
                    _ => {
                        ::std::option::Option::Some(
                            __rt::require_id(
                                "create_payment",
                                body,
                                &[__rt::Seg::Key("id")],
                                "$.id",
                            )?,
                        )
                    }
                };
                let result = match status {
                    ::std::option::Option::Some(
                        ::integration_runtime::RemoteStatus::Completed,
                    ) => {
                        ::std::option::Option::Some(
                            __rt::extract(
                                "create_payment",
                                body,
                                &[
                                    __rt::FieldPath {
                                        field: "id",
                                        path: &[
                                            __rt::Seg::Key("latest_charge"),
                                            __rt::Seg::Key("id"),
                                        ],
                                        text: "$.latest_charge.id",
                                    },
                                    __rt::FieldPath {
                                        field: "amount_received",
                                        path: &[__rt::Seg::Key("amount_received")],
                                        text: "$.amount_received",
                                    },
                                    __rt::FieldPath {
                                        field: "paid_at",
                                        path: &[
                                            __rt::Seg::Key("latest_charge"),
                                            __rt::Seg::Key("created_at"),
                                        ],
                                        text: "$.latest_charge.created_at",
                                    },
                                ],
                            )?,
                        )
                    }
                    _ => ::std::option::Option::None,
                };
                ::integration_runtime::Reply {
                    http_status: response.status,
                    external_id,
                    status,
                    result,
                    error: __rt::extract_message(
                        body,
                        &[__rt::Seg::Key("error"), __rt::Seg::Key("message")],
                    ),
                }
            })
        }
        /// `GET /v1/payment_intents/{external_id}`.
        pub async fn retrieve_payment(
            &self,
            external_id: &str,
        ) -> ::std::result::Result<
            ::integration_runtime::Reply<Charge>,
            ::integration_runtime::ClientError,
        > {
            let mut path = __rt::PathBuilder::new();
            path.literal("/v1/payment_intents/");
            path.param(&__rt::serde_json::Value::from(external_id));
            #[allow(unused_mut, clippy::vec_init_then_push)]
            let mut query: ::std::vec::Vec<(&'static str, __rt::serde_json::Value)> = ::std::vec::Vec::new();
            #[allow(unused_mut, clippy::vec_init_then_push)]
            let mut headers: ::std::vec::Vec<(&'static str, ::std::string::String)> = ::std::vec::Vec::new();
            let response = self
                .http
                .send(__rt::HttpRequest {
                    endpoint: "retrieve_payment",
                    method: "GET",
                    path: path.finish(),
                    query,
                    headers,
                    body: ::std::option::Option::None,
                    error_path: ::std::option::Option::Some(
                        &[
                            __rt::Seg::Key("last_payment_error"),
                            __rt::Seg::Key("message"),
                        ],
                    ),
                    policy: &__DESCRIPTOR.endpoints[1usize].policy,
                })
                .await?;
            let body = &response.body;
            ::std::result::Result::Ok({
                let status = ::std::option::Option::Some(
                    __rt::map_status(
                        "retrieve_payment",
                        body,
                        &[__rt::Seg::Key("status")],
                        "$.status",
                        &[
                            (
                                "requires_action",
                                ::integration_runtime::RemoteStatus::Processing,
                            ),
                            (
                                "processing",
                                ::integration_runtime::RemoteStatus::Processing,
                            ),
                            (
                                "succeeded",
                                ::integration_runtime::RemoteStatus::Completed,
                            ),
                            ("canceled", ::integration_runtime::RemoteStatus::Failed),
                        ],
                    )?,
                );
                let external_id = ::std::option::Option::None;
                let result = match status {
                    ::std::option::Option::Some(
                        ::integration_runtime::RemoteStatus::Completed,
                    ) => {
                        ::std::option::Option::Some(
                            __rt::extract(
                                "retrieve_payment",
                                body,
                                &[
                                    __rt::FieldPath {
                                        field: "id",
                                        path: &[
                                            __rt::Seg::Key("latest_charge"),
                                            __rt::Seg::Key("id"),
                                        ],
                                        text: "$.latest_charge.id",
                                    },
                                    __rt::FieldPath {
                                        field: "amount_received",
                                        path: &[__rt::Seg::Key("amount_received")],
                                        text: "$.amount_received",
                                    },
                                    __rt::FieldPath {
                                        field: "paid_at",
                                        path: &[
                                            __rt::Seg::Key("latest_charge"),
                                            __rt::Seg::Key("created_at"),
                                        ],
                                        text: "$.latest_charge.created_at",
                                    },
                                ],
                            )?,
                        )
                    }
                    _ => ::std::option::Option::None,
                };
                ::integration_runtime::Reply {
                    http_status: response.status,
                    external_id,
                    status,
                    result,
                    error: __rt::extract_message(
                        body,
                        &[
                            __rt::Seg::Key("last_payment_error"),
                            __rt::Seg::Key("message"),
                        ],
                    ),
                }
            })
        }
    }
    /// The `Payments` integration, ready to register with the runtime.
    #[derive(Debug, Clone)]
    pub struct Payments {
        config: PaymentsConfig,
        client: PaymentsClient,
    }
    impl Payments {
        /// The integration with the given settings.
        pub fn new(
            config: PaymentsConfig,
        ) -> ::std::result::Result<Self, ::integration_runtime::ConfigError> {
            let client = PaymentsClient::new(&config)?;
            ::std::result::Result::Ok(Payments { config, client })
        }
        /// The integration configured from the environment; every missing
        /// variable is reported at once, with what it is for.
        pub fn from_env() -> ::std::result::Result<
            Self,
            ::integration_runtime::ConfigError,
        > {
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
        pub fn with_reqwest_client(
            mut self,
            client: ::integration_runtime::reqwest::Client,
        ) -> Self {
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
        pub fn descriptor() -> &'static ::integration_runtime::IntegrationDescriptor {
            &__DESCRIPTOR
        }
    }
    impl ::integration_runtime::Integration for Payments {
        fn descriptor(&self) -> &'static ::integration_runtime::IntegrationDescriptor {
            &__DESCRIPTOR
        }
        fn validate(
            &self,
            endpoint: &str,
            params: &__rt::serde_json::Value,
        ) -> ::std::result::Result<(), ::integration_runtime::ClientError> {
            match endpoint {
                "create_payment" => {
                    let request: PaymentIntent = __rt::serde_json::from_value(
                            params.clone(),
                        )
                        .map_err(|e| __rt::invalid_params("create_payment", &e))?;
                    request
                        .validate()
                        .map_err(|e| __rt::invalid_request("create_payment", e))
                }
                _ => {
                    ::std::result::Result::Err(
                        __rt::unknown_endpoint("Payments", endpoint),
                    )
                }
            }
        }
        fn start<'a>(
            &'a self,
            endpoint: &'a str,
            params: &'a __rt::serde_json::Value,
            options: &'a ::integration_runtime::CallOptions,
        ) -> ::integration_runtime::BoxFuture<
            'a,
            ::std::result::Result<
                ::integration_runtime::Reply<__rt::serde_json::Value>,
                ::integration_runtime::ClientError,
            >,
        > {
            ::std::boxed::Box::pin(async move {
                let _ = (params, options);
                match endpoint {
                    "create_payment" => {
                        let request: PaymentIntent = __rt::serde_json::from_value(
                                params.clone(),
                            )
                            .map_err(|e| __rt::invalid_params("create_payment", &e))?;
                        ::std::result::Result::Ok(
                            self
                                .client
                                .create_payment(&request, options)
                                .await?
                                .into_json(),
                        )
                    }
                    _ => {
                        ::std::result::Result::Err(
                            __rt::unknown_endpoint("Payments", endpoint),
                        )
                    }
                }
            })
        }
        fn poll<'a>(
            &'a self,
            external_id: &'a str,
        ) -> ::std::option::Option<
            ::integration_runtime::BoxFuture<
                'a,
                ::std::result::Result<
                    ::integration_runtime::Reply<__rt::serde_json::Value>,
                    ::integration_runtime::ClientError,
                >,
            >,
        > {
            ::std::option::Option::Some(
                ::std::boxed::Box::pin(async move {
                    ::std::result::Result::Ok(
                        self.client.retrieve_payment(external_id).await?.into_json(),
                    )
                }),
            )
        }
        fn read_webhook(
            &self,
            payload: &__rt::serde_json::Value,
        ) -> ::std::option::Option<
            ::std::result::Result<
                ::integration_runtime::Reply<__rt::serde_json::Value>,
                ::integration_runtime::ClientError,
            >,
        > {
            let read = || -> ::std::result::Result<
                ::integration_runtime::Reply<Charge>,
                ::integration_runtime::ClientError,
            > {
                let body = payload;
                ::std::result::Result::Ok({
                    let status = ::std::option::Option::Some(
                        __rt::map_status(
                            "webhook",
                            body,
                            &[__rt::Seg::Key("type")],
                            "$.type",
                            &[
                                (
                                    "payment_intent.processing",
                                    ::integration_runtime::RemoteStatus::Processing,
                                ),
                                (
                                    "payment_intent.succeeded",
                                    ::integration_runtime::RemoteStatus::Completed,
                                ),
                                (
                                    "payment_intent.payment_failed",
                                    ::integration_runtime::RemoteStatus::Failed,
                                ),
                                (
                                    "payment_intent.canceled",
                                    ::integration_runtime::RemoteStatus::Failed,
                                ),
                            ],
                        )?,
                    );
                    let external_id = __rt::extract_id(
                        body,
                        &[
                            __rt::Seg::Key("data"),
                            __rt::Seg::Key("object"),
                            __rt::Seg::Key("id"),
                        ],
                    );
                    let result = match status {
                        ::std::option::Option::Some(
                            ::integration_runtime::RemoteStatus::Completed,
                        ) => {
                            ::std::option::Option::Some(
                                __rt::extract(
                                    "webhook",
                                    body,
                                    &[
                                        __rt::FieldPath {
                                            field: "id",
                                            path: &[
                                                __rt::Seg::Key("data"),
                                                __rt::Seg::Key("object"),
                                                __rt::Seg::Key("latest_charge"),
                                                __rt::Seg::Key("id"),
                                            ],
                                            text: "$.data.object.latest_charge.id",
                                        },
                                        __rt::FieldPath {
                                            field: "amount_received",
                                            path: &[
                                                __rt::Seg::Key("data"),
                                                __rt::Seg::Key("object"),
                                                __rt::Seg::Key("amount_received"),
                                            ],
                                            text: "$.data.object.amount_received",
                                        },
                                        __rt::FieldPath {
                                            field: "paid_at",
                                            path: &[
                                                __rt::Seg::Key("data"),
                                                __rt::Seg::Key("object"),
                                                __rt::Seg::Key("latest_charge"),
                                                __rt::Seg::Key("created_at"),
                                            ],
                                            text: "$.data.object.latest_charge.created_at",
                                        },
                                    ],
                                )?,
                            )
                        }
                        _ => ::std::option::Option::None,
                    };
                    ::integration_runtime::Reply {
                        http_status: 200,
                        external_id,
                        status,
                        result,
                        error: __rt::extract_message(
                            body,
                            &[
                                __rt::Seg::Key("data"),
                                __rt::Seg::Key("object"),
                                __rt::Seg::Key("last_payment_error"),
                                __rt::Seg::Key("message"),
                            ],
                        ),
                    }
                })
            };
            ::std::option::Option::Some(
                read().map(::integration_runtime::Reply::into_json),
            )
        }
        fn circuit_states(
            &self,
        ) -> ::std::vec::Vec<
            (::std::string::String, ::integration_runtime::CircuitState),
        > {
            self.client.http.circuit_states()
        }
        fn webhook_secret(
            &self,
        ) -> ::std::option::Option<::integration_runtime::Secret> {
            ::std::option::Option::Some(self.config.webhook_secret.clone())
        }
    }
    #[doc(hidden)]
    const __POLICY: ::integration_runtime::PolicyDescriptor = ::integration_runtime::PolicyDescriptor {
        timeout_ms: 20000u64,
        connect_timeout_ms: 5000u64,
        retry: ::integration_runtime::RetryPolicy {
            max_attempts: 4u32,
            initial_backoff_ms: 500u64,
            max_backoff_ms: 30000u64,
            multiplier: 2f64,
            on: ::integration_runtime::RetryOn {
                server_errors: true,
                too_many_requests: true,
                timeouts: true,
                connect_errors: true,
                transport_errors: true,
                too_large: false,
            },
        },
        circuit_breaker: ::std::option::Option::Some(::integration_runtime::CircuitBreakerPolicy {
            failure_threshold: 10u32,
            open_for_ms: 60000u64,
            half_open_probes: 2u32,
        }),
        rate_limit: ::std::option::Option::Some(::integration_runtime::RateLimitPolicy {
            per_second: 25f64,
            burst: 25u32,
        }),
        concurrency: ::std::option::Option::None,
        max_response_bytes: 10485760u64,
        redirects: ::integration_runtime::RedirectPolicy::SameOrigin,
    };
    #[doc(hidden)]
    pub static __DESCRIPTOR: ::integration_runtime::IntegrationDescriptor = ::integration_runtime::IntegrationDescriptor {
        name: "Payments",
        module: "payments",
        endpoints: &[
            ::integration_runtime::EndpointDescriptor {
                name: "create_payment",
                method: "POST",
                path: "/v1/payment_intents",
                mode: ::integration_runtime::Mode::Async,
                starts_calls: true,
                idempotent: false,
                idempotency_key: ::std::option::Option::Some(
                    ::integration_runtime::IdempotencyKeyPlacement::Header(
                        "Idempotency-Key",
                    ),
                ),
                policy: __POLICY,
                request_fields: ::integration_runtime::RequestFields {
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
            },
            ::integration_runtime::EndpointDescriptor {
                name: "retrieve_payment",
                method: "GET",
                path: "/v1/payment_intents/{external_id}",
                mode: ::integration_runtime::Mode::Sync,
                starts_calls: false,
                idempotent: true,
                idempotency_key: ::std::option::Option::None,
                policy: __POLICY,
                request_fields: ::integration_runtime::RequestFields {
                    all: &[],
                    path: &[],
                    headers: &[],
                },
            },
        ],
        policy: __POLICY,
        polling: ::std::option::Option::Some(::integration_runtime::PollingDescriptor {
            endpoint: "retrieve_payment",
            interval_ms: 5000u64,
            backoff: 2f64,
            max_interval_ms: 300000u64,
            give_up_after_s: 86400u64,
        }),
        webhook: ::std::option::Option::Some(::integration_runtime::WebhookDescriptor {
            path: "/webhooks/payments",
            scheme: ::integration_runtime::SignatureScheme::Stripe,
            secret_env: "PAYMENTS_WEBHOOK_SECRET",
            tolerance_s: 300u64,
            max_body_bytes: 1048576usize,
        }),
    };
}
