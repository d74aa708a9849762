<?php
/* Minimal theme: just enough for post/page permalinks to render something. */
?><!doctype html>
<html <?php language_attributes(); ?>>
<head><meta charset="<?php bloginfo('charset'); ?>"><title><?php wp_title('|', true, 'right'); bloginfo('name'); ?></title><?php wp_head(); ?></head>
<body <?php body_class(); ?>>
<?php
if (have_posts()) {
    while (have_posts()) {
        the_post();
        echo '<article id="post-' . get_the_ID() . '"><h1>';
        the_title();
        echo '</h1>';
        the_content();
        echo '</article>';
    }
} else {
    echo '<p>Nothing found.</p>';
}
wp_footer();
?>
</body>
</html>
