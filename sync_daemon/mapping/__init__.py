"""The customer-mapping table: vendor customers to Syncro customers and recurring invoices."""
