    pub __NAME__: crate::__NAME__::__TYPE__Service,
