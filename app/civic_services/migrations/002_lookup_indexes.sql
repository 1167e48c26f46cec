-- Indexes for what citizens search by on a ULB page (ward, owner name as a case-insensitive prefix) and the
-- documents behind certificates and plans. Separate from 001 to keep each migration one reviewable change.

CREATE INDEX properties_ulb_ward_idx ON properties (ulb_code, ward, id);
CREATE INDEX properties_ulb_owner_idx ON properties (ulb_code, lower(owner_name) text_pattern_ops);
CREATE INDEX certificates_document_idx ON certificates (document_id);
CREATE INDEX building_permissions_plan_idx ON building_permissions (plan_document_id);
