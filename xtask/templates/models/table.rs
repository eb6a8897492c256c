diesel::table! {
    /// Served by the `__NAME__` service.
    __NAME__ (__ID__) {
        /// Generated.
        __ID__ -> Integer,
        name -> Text,
    }
}

