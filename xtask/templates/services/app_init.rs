            __NAME__: crate::__NAME__::__TYPE__Service::new(database.clone()),
