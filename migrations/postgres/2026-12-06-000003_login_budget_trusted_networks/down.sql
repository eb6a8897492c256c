DROP FUNCTION myapi.login_budget_reserve_v2;
