-- Users who bought, and how often.
SELECT user_id, count(*) AS total_purchases
FROM raw.user_activity
WHERE action = 'purchase'
GROUP BY user_id
