-- The database of the driver matrix (tests/driver_matrix.rs).
CREATE TABLE employer (
    id bigint PRIMARY KEY,
    name text NOT NULL,
    tax_code text
);
CREATE TABLE person (
    id bigint PRIMARY KEY,
    full_name text NOT NULL,
    citizen_id char(12) NOT NULL,
    phone text,
    province_code char(2) NOT NULL DEFAULT '01',
    employer_id bigint REFERENCES employer (id),
    birth_date date
);
CREATE UNIQUE INDEX person_citizen_key ON person (citizen_id);
CREATE INDEX person_phone_idx ON person (phone);
CREATE INDEX person_lower_name_idx ON person (lower(full_name));
ALTER TABLE person ADD CONSTRAINT person_phone_digits CHECK (phone ~ '^[0-9]+$');
ALTER TABLE person ADD CONSTRAINT person_province_len CHECK (length(province_code) = 2);
COMMENT ON TABLE person IS 'People of the register';
COMMENT ON COLUMN person.full_name IS 'Name as on the card';
COMMENT ON COLUMN person.phone IS 'phone-comment-must-not-leak';
CREATE TABLE hidden_payroll (id int PRIMARY KEY, salary numeric);
COMMENT ON TABLE hidden_payroll IS 'hidden-comment-must-not-leak';
INSERT INTO employer VALUES (1, 'Acme', 'TAX-1'), (2, 'Globex', 'TAX-2');
INSERT INTO person
SELECT g, 'Person ' || g, lpad((1203004000 + g)::text, 12, '0'),
       '0999' || lpad(g::text, 6, '0'),
       CASE WHEN g % 2 = 0 THEN '01' ELSE '79' END,
       1 + g % 2, DATE '1980-01-01' + g
FROM generate_series(1, 40) g;
INSERT INTO hidden_payroll VALUES (1, 123456);
ANALYZE;
